"""Preflight checks: what will not work on this host, one line each, with the key or place at fault.

`otpguard check-config` runs the checks that need only the configuration; `otpguard doctor`
runs them all: Postfix's milter settings against the socket (chroot included), the socket as
Postfix reaches it, the files as the service user reads them, and the resolver.
"""
from __future__ import annotations

import errno
import os
import pwd
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .core.policy import AUTH_KINDS
from .mta.postfixcf import PostfixView, Service, connect_path, main_cf_spelling
from .mta.sockets import libmilter_spec
from .ops.metrics import parse_listen

POSTFIX_USER = "postfix"
SERVICE_USER = "otpguard"
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """Something that will not work: where (a config key, a Postfix service, a file) and why."""

    where: str
    text: str

    def line(self) -> str:
        return f"{self.where}: {self.text}"


# -- the configuration alone (check-config and doctor) -------------------------------------------

def config_problems(config: Config, socket_spec: str | None = None) -> list[Problem]:
    """Problems visible in the configuration itself (no system access)."""
    out: list[Problem] = []
    a, budget = config.auth, config.analysis.time_budget_seconds
    if a.verify and budget <= a.message_budget:
        out.append(Problem(where="analysis.time_budget_seconds", text=(
            f"{budget:g} s is not above auth.message_budget ({a.message_budget:g} s): a slow resolver would "
            "overrun the analysis budget (milter.on_error for the message) instead of giving temperror results")))
    if config.metrics.enabled:
        try:
            parse_listen(config.metrics.listen)
        except ValueError as exc:
            out.append(Problem(where="metrics.listen", text=str(exc)))
    spec = socket_spec or config.milter.socket
    try:
        libmilter_spec(spec)
    except ValueError as exc:
        out.append(Problem(where="milter.socket", text=str(exc)))
    if a.authserv_id.lower() in (t.lower() for t in a.trusted_authserv_ids):
        out.append(Problem(where="auth.trusted_authserv_ids", text=(
            f"names our own authserv_id {a.authserv_id!r}: incoming results in that name are forgeries "
            "and are removed (RFC 8601 section 5)")))
    lists = config.policy.lists
    if not a.verify and not (a.trusted_authserv_ids and a.use_upstream_results):
        for which, entries in (("allow", lists.allow), ("deny", lists.deny)):
            authenticated = [e for e in entries if e.kind in AUTH_KINDS]
            if authenticated:
                out.append(Problem(where=f"policy.{which}_file", text=(
                    f"line {authenticated[0].line} ({authenticated[0].spelling}) and other dkim/dmarc/spf entries "
                    "never match: auth.verify is false and no trusted upstream results are used")))
    return out


# -- Postfix's milter settings -------------------------------------------------------------------

def _ours(spec: str, socket_spec: str, service: Service, queue: str) -> bool:
    if socket_spec.startswith("unix:"):
        path = connect_path(spec, chroot=service.chroot, queue_directory=queue)
        return path is not None and os.path.normpath(path) == os.path.normpath(socket_spec[5:])
    if not spec.startswith("inet:"):
        return False
    want_host, _, want_port = socket_spec[5:].rpartition(":")
    host, _, port = spec[5:].rpartition(":")
    same_host = host.strip("[]") == want_host.strip("[]") or want_host.strip("[]") in ("", "0.0.0.0", "::")
    return port == want_port and same_host


def _meant_for_us(spec: str, socket_spec: str) -> bool:
    """A milter entry that names our socket's file (or otpguard) but may resolve elsewhere."""
    if spec.startswith("unix:") and socket_spec.startswith("unix:"):
        return os.path.basename(spec[5:]) == os.path.basename(socket_spec[5:]) or "otpguard" in spec
    return "otpguard" in spec


def postfix_problems(config: Config, view: PostfixView, socket_spec: str | None = None) -> list[Problem]:
    """Which Postfix services will not reach the milter, and why (chroot, spelling, no entry)."""
    spec_ours = socket_spec or config.milter.socket
    spelling = main_cf_spelling(spec_ours, view.queue_directory)
    out: list[Problem] = []
    smtpd = [s for s in view.services if s.command == "smtpd"]
    if not smtpd:
        out.append(Problem(where=f"postfix {view.config_dir}", text="master.cf runs no smtpd service"))
    for service in view.services:
        if any(_ours(m, spec_ours, service, view.queue_directory) for m in service.milters):
            continue
        meant = [m for m in service.milters if _meant_for_us(m, spec_ours)]
        if service.command == "cleanup" and not meant:
            continue  # filtering locally submitted mail (non_smtpd_milters) is the admin's choice
        where = f"postfix {service.name}"
        if meant:
            m = meant[0]
            seen = connect_path(m, chroot=service.chroot, queue_directory=view.queue_directory) or m
            chroot = f"runs chrooted in {view.queue_directory} and " if service.chroot else ""
            text = (f"{service.parameter} has {m}: this service {chroot}connects to {seen}, but otpguard "
                    f"listens on {spec_ours[5:] if spec_ours.startswith('unix:') else spec_ours}")
        else:
            listed = ", ".join(service.milters) or "(empty)"
            text = f"{service.parameter} = {listed} does not name otpguard ({spec_ours})"
        out.append(Problem(where=where, text=f"{text}; set {service.parameter} = {spelling}"))
    if view.milter_default_action not in ("tempfail", "accept"):
        out.append(Problem(where=f"postfix {view.config_dir}", text=(
            f"milter_default_action = {view.milter_default_action or '(unset)'}: use tempfail (mail waits while "
            "otpguard is down) or accept (mail passes unfiltered)")))
    return out


# -- doing things as another user ----------------------------------------------------------------

def run_as(user: str, task: Callable[[], str | None], *, chroot: str | None = None) -> str | None:
    """Run task() in a child process as `user` (its groups too), optionally chrooted first:
    what task returns (a problem) or None. Needs root; as another user, runs it as we are."""
    entry = pwd.getpwnam(user)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into the caller's code
        code = 0
        try:
            os.close(read)
            if os.geteuid() == 0:
                if chroot:
                    os.chroot(chroot)
                    os.chdir("/")
                os.initgroups(entry.pw_name, entry.pw_gid)
                os.setgid(entry.pw_gid)
                os.setuid(entry.pw_uid)
            problem = task()
            os.write(write, (problem or "").encode("utf-8", "replace")[:4000])
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, whatever it is
            os.write(write, f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")[:4000])
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 4096):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    text = b"".join(chunks).decode("utf-8", "replace")
    return text or None


# -- the socket as Postfix reaches it ------------------------------------------------------------

SMFI_VERSION = 6
SMFIC_OPTNEG, SMFIC_QUIT = b"O", b"Q"


def milter_handshake(sock: socket.socket) -> int:
    """Option negotiation (milter protocol, SMFIC_OPTNEG) on a connected socket: the version
    the milter answers with. Raises OSError or ValueError when it is not a milter."""
    sock.sendall(struct.pack("!Ic3I", 13, SMFIC_OPTNEG, SMFI_VERSION, 0x1FF, 0x1FFFFF))
    header = _recv_exact(sock, 5)
    length, command = struct.unpack("!Ic", header)
    if command != SMFIC_OPTNEG or not 13 <= length <= 1024:
        raise ValueError(f"not a milter answer (command {command!r}, length {length})")
    body = _recv_exact(sock, length - 1)
    (version,) = struct.unpack("!I", body[:4])
    sock.sendall(struct.pack("!Ic", 1, SMFIC_QUIT))
    return int(version)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ValueError("the connection closed during option negotiation")
        data += chunk
    return data


def _try_milter(family: int, address: str | tuple[str, int]) -> str | None:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(CONNECT_TIMEOUT)
            s.connect(address)
            version = milter_handshake(s)
    except OSError as exc:
        hint = ""
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
            hint = " (is otpguard running? systemctl status otpguard)"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            hint = " (the postfix user needs search permission on the directory and write permission on the socket)"
        return f"cannot connect to {address}: {exc.strerror or exc}{hint}"
    except ValueError as exc:
        return f"{address} does not speak the milter protocol: {exc}"
    if version < 2:
        return f"{address} answered with milter protocol version {version}"
    return None


def socket_problems(config: Config, view: PostfixView | None, socket_spec: str | None = None) -> list[Problem]:
    """Connect to the milter as each Postfix service would (its chroot, user postfix) and
    negotiate: one problem per service that cannot."""
    spec = socket_spec or config.milter.socket
    if spec.startswith("inet:"):
        host, _, port = spec[5:].rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        problem = _try_milter(family, (host, int(port)))
        return [Problem(where=f"socket {spec}", text=problem)] if problem else []
    path = spec[5:]
    targets: list[tuple[str, str | None, str]] = []  # (where, chroot, path inside it)
    if view is not None:
        for service in view.services:
            for m in service.milters:
                if _ours(m, spec, service, view.queue_directory):
                    inside = m.partition(":")[2]
                    if not inside.startswith("/"):
                        inside = os.path.join(view.queue_directory if not service.chroot else "/", inside)
                    targets.append((f"postfix {service.name}", view.queue_directory if service.chroot else None, inside))
                    break
    if not targets:
        targets.append((f"socket {spec}", None, path))
    out: list[Problem] = []
    as_root = os.geteuid() == 0
    try:
        pwd.getpwnam(POSTFIX_USER)
        user = POSTFIX_USER if as_root else None
    except KeyError:
        user = None
    for where, chroot, inside in targets:
        if user is not None:
            problem = run_as(user, lambda inside=inside: _try_milter(socket.AF_UNIX, inside),
                             chroot=chroot)
        else:
            problem = _try_milter(socket.AF_UNIX, path)
        if problem:
            who = f"as user {user}" + (f", chrooted in {chroot}" if chroot else "") if user else "as this user"
            out.append(Problem(where=where, text=f"{who}: {problem}"))
    return out


# -- files as the service user -------------------------------------------------------------------

def _readable(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    return None


def _writable_dir(path: str) -> str | None:
    if not os.access(path, os.W_OK | os.X_OK):
        return f"cannot write in {path}"
    return None


def config_files(config: Config) -> list[str]:
    """Every file the service reads at start and on reload."""
    files = [config.path, *(b.path for b in config.brands if b.path)]
    base = Path(config.path).parent
    for name in (config.policy.allow_file, config.policy.deny_file):
        if name:
            files.append(str(name if Path(name).is_absolute() else base / name))
    return files


def file_problems(config: Config, user: str = SERVICE_USER) -> list[Problem]:
    """The configuration, brand profiles and list files, read as the service user; the spool
    directory written by it."""
    try:
        pwd.getpwnam(user)
    except KeyError:
        return [Problem(where=f"user {user}", text=(
            "does not exist: create it (adduser --system --group --no-create-home --home /nonexistent "
            f"{user}) or name the service user with --user"))]
    out = []
    for path in config_files(config):
        problem = run_as(user, lambda path=path: _readable(path))
        if problem:
            out.append(Problem(where=f"user {user}", text=problem))
    if config.milter.spool_dir:
        problem = run_as(user, lambda: _writable_dir(config.milter.spool_dir))
        if problem:
            out.append(Problem(where="milter.spool_dir", text=f"user {user} {problem}"))
    return out
