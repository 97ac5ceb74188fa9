"""`otpguard doctor`: the preflight an admin runs after installing (and after changing Postfix).

It checks what `check-config` checks, then the host: Postfix's milter settings against the
configured socket and its chroot, the socket reached as Postfix reaches it (chrooted, as user
postfix, with a milter handshake), the configuration and list files read as the service user,
and whether the resolver can see the brands' own records. One line per problem; exit 1 when
there is any, 2 for a configuration that does not load.
"""
from __future__ import annotations

import argparse
import os
import sys

from . import preflight
from .config import ConfigError, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="configuration file (TOML)")
    parser.add_argument("--socket", metavar="SPEC", help="the socket otpguard serve listens on, if not milter.socket")
    parser.add_argument("--postfix-config", metavar="DIR",
                        help="Postfix configuration directory (default: Postfix's own, /etc/postfix)")
    parser.add_argument("--user", default=preflight.SERVICE_USER,
                        help="the user otpguard serve runs as (default: %(default)s)")
    parser.add_argument("--no-dns", action="store_true", help="skip the resolver check")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"otpguard: config error: {exc}", file=sys.stderr)
        return 2
    socket_spec = args.socket or config.milter.socket
    problems: list[preflight.Problem] = []
    checked: list[str] = []

    problems += preflight.config_problems(config, socket_spec)
    checked.append(f"configuration {config.path}")
    from .mta.pool import describe_workers

    checked.append(f"analysis workers: {describe_workers(config.milter)}")

    from .mta.postfixcf import PostfixConfigError, read_postfix

    view = None
    try:
        view = read_postfix(args.postfix_config)
    except PostfixConfigError as exc:
        problems.append(preflight.Problem(where="postfix", text=f"cannot read its configuration: {exc}"))
    else:
        problems += preflight.postfix_problems(config, view, socket_spec)
        services = ", ".join(f"{s.name}{' (chroot)' if s.chroot else ''}" for s in view.services) or "none"
        checked.append(f"postfix {view.config_dir}: milter services {services}")

    problems += preflight.socket_problems(config, view, socket_spec)
    checked.append(f"socket {socket_spec}" + (" as user postfix" if os.geteuid() == 0 else ""))

    if os.geteuid() == 0:
        problems += preflight.file_problems(config, args.user)
        checked.append(f"files read as user {args.user}")
    else:
        print(f"note: not root: files not checked as user {args.user}, socket not checked as user postfix")

    if config.auth.verify and not args.no_dns:
        from .ops.dnsprobe import probe, probe_client, probe_domains

        domains = probe_domains(config)
        result = probe(probe_client(config), domains)
        problems += [preflight.Problem(where="dns", text=p) for p in result.problems]
        checked.append(f"dns: {', '.join(domains)} as the configured resolver sees them")

    for line in checked:
        print(f"checked: {line}")
    for problem in problems:
        print(f"problem: {problem.line()}")
    if problems:
        print(f"otpguard doctor: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("otpguard doctor: no problems found")
    return 0
