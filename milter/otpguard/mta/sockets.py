"""Listening sockets: Postfix's socket spelling to libmilter's, and TCP_NODELAY on the listener."""
from __future__ import annotations

import os
import socket
import stat


def libmilter_spec(spec: str) -> str:
    """Postfix socket spelling to libmilter's: unix:/p -> unix:/p, inet:H:P -> inet:P@H."""
    kind, _, rest = spec.partition(":")
    if kind == "unix" and rest.startswith("/"):
        return f"unix:{rest}"
    if kind in ("inet", "inet6"):
        host, sep, port = rest.rpartition(":")
        host = host.strip("[]")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad socket {spec!r}: expected inet:HOST:PORT")
        family = "inet6" if ":" in host else "inet"
        return f"{family}:{port}@{host}" if host else f"{family}:{port}"
    raise ValueError(f"bad socket {spec!r}: expected unix:/path or inet:HOST:PORT")


def _socket_fds() -> list[int]:
    """Open socket file descriptors of this process."""
    try:
        fds = [int(x) for x in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: probe the usual range
        fds = list(range(3, 1024))
    out = []
    for fd in fds:
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                out.append(fd)
        except OSError:
            continue
    return out


def set_listener_nodelay(port: int) -> int:
    """Set TCP_NODELAY on our listening socket(s) on port; returns how many were set.

    libmilter never sets TCP_NODELAY and does not expose its sockets. Linux copies the
    listening socket's TCP_NODELAY to every accepted socket (the child socket is cloned from
    the listener), so setting it once on the listener covers all MTA connections.
    """
    count = 0
    for fd in _socket_fds():
        try:
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if s.family not in (socket.AF_INET, socket.AF_INET6) or s.type != socket.SOCK_STREAM:
                continue
            if not s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                continue
            if s.getsockname()[1] != port:
                continue
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            count += 1
        except OSError:
            continue
        finally:
            s.close()
    return count
