"""What Postfix makes of a milter socket: the spelling for main.cf, and the file a (possibly
chrooted) Postfix daemon really connects to.

Every Postfix daemon runs with the queue directory as its working directory, and those marked
chroot in master.cf (column 5 = y, Debian's default for smtpd and cleanup) are chrooted there.
So `smtpd_milters = unix:otpguard/otpguard.sock` (relative) names the same file chrooted or
not, while `unix:/run/otpguard/otpguard.sock` (absolute) names a file inside the chroot for a
chrooted daemon: /var/spool/postfix/run/otpguard/otpguard.sock, which nothing creates
(MILTER_README, "Milter applications"; postconf(5), smtpd_milters).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import PurePosixPath

QUEUE_DIRECTORY = "/var/spool/postfix"
POSTCONF_CANDIDATES = ("/usr/sbin/postconf", "/usr/bin/postconf")
POSTCONF_TIMEOUT = 30


def main_cf_spelling(socket_spec: str, queue_directory: str = QUEUE_DIRECTORY) -> str:
    """The smtpd_milters entry for our socket: relative to the queue directory when the socket
    is inside it (right for chrooted and unchrooted daemons alike), else the spec itself."""
    if not socket_spec.startswith("unix:"):
        return socket_spec
    path = PurePosixPath(os.path.normpath(socket_spec[5:]))
    try:
        relative = path.relative_to(PurePosixPath(os.path.normpath(queue_directory)))
    except ValueError:
        return socket_spec
    return f"unix:{relative}" if str(relative) != "." else socket_spec


def connect_path(milter_spec: str, *, chroot: bool, queue_directory: str) -> str | None:
    """The file a Postfix daemon connects to for a unix: milter (None for inet: and others)."""
    kind, _, rest = milter_spec.partition(":")
    if kind not in ("unix", "local") or not rest:
        return None
    if not rest.startswith("/"):
        return os.path.normpath(os.path.join(queue_directory, rest))
    if chroot:
        return os.path.normpath(queue_directory.rstrip("/") + rest)
    return os.path.normpath(rest)


_GROUP = re.compile(r"\{([^}]*)\}")


def parse_milters(value: str) -> list[str]:
    """The milter specs of a smtpd_milters value: separated by commas or whitespace, each
    either `spec` or `{ spec, name=value, ... }` (Postfix 3.0 per-milter settings)."""
    specs: list[str] = []
    rest = _GROUP.sub(lambda m: " " + (re.split(r"[,\s]+", m.group(1).strip())[0] or "") + " ", value)
    for item in re.split(r"[,\s]+", rest):
        if item:
            specs.append(item)
    return specs


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    """A master.cf service that runs milters: smtpd (smtpd_milters) or cleanup (non_smtpd_milters)."""

    name: str  # service/type, e.g. smtp/inet
    command: str  # smtpd or cleanup
    chroot: bool
    milters: tuple[str, ...]
    parameter: str  # the parameter its milters come from


@dataclass(frozen=True, slots=True, kw_only=True)
class PostfixView:
    """The parts of a Postfix configuration that decide whether mail reaches a milter."""

    config_dir: str
    queue_directory: str
    milter_default_action: str
    services: tuple[Service, ...] = field(default=())


class PostfixConfigError(Exception):
    """postconf is missing or cannot read the configuration."""


def postconf_path() -> str | None:
    found = shutil.which("postconf")
    return found or next((p for p in POSTCONF_CANDIDATES if os.access(p, os.X_OK)), None)


def _postconf(tool: str, config_dir: str | None, *args: str) -> str:
    cmd = [tool, *(("-c", config_dir) if config_dir else ()), *args]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=POSTCONF_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostfixConfigError(f"{' '.join(cmd)}: {exc}") from None
    if res.returncode != 0:
        raise PostfixConfigError((res.stderr.strip() or res.stdout.strip() or f"exit {res.returncode}")
                                 .splitlines()[-1])
    return res.stdout


def _settings(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(" = ")
        if sep:
            out[key.strip()] = value.strip()
        elif line.endswith(" ="):
            out[line[:-2].strip()] = ""
    return out


def read_postfix(config_dir: str | None = None) -> PostfixView:
    """The queue directory, milter_default_action and milter services of a Postfix instance
    (config_dir: its configuration directory, default /etc/postfix), by asking postconf."""
    tool = postconf_path()
    if tool is None:
        raise PostfixConfigError("postconf not found: is Postfix installed?")
    names = ("queue_directory", "smtpd_milters", "non_smtpd_milters", "milter_default_action")
    lines = _postconf(tool, config_dir, "-hx", *names).splitlines()
    values = dict(zip(names, lines + [""] * (len(names) - len(lines))))
    fields = _settings(_postconf(tool, config_dir, "-Fx"))
    overrides = _settings(_postconf(tool, config_dir, "-Px"))
    services = []
    for key, command in fields.items():
        name, _, attr = key.rpartition("/")
        if attr != "command":
            continue
        program = command.split()[0] if command.split() else ""
        if program not in ("smtpd", "cleanup"):
            continue
        param = "smtpd_milters" if program == "smtpd" else "non_smtpd_milters"
        milters = overrides.get(f"{name}/{param}", values[param])
        # master(5): "-" is the default, n since Postfix 3.0.
        chroot = fields.get(f"{name}/chroot", "-") == "y"
        services.append(Service(name=name, command=program, chroot=chroot, milters=tuple(parse_milters(milters)),
                                parameter=param))
    return PostfixView(config_dir=config_dir or "/etc/postfix", queue_directory=values["queue_directory"],
                       milter_default_action=values["milter_default_action"], services=tuple(services))
