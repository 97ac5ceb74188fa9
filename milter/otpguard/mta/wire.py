"""The analysis hand-off on the wire: one request and one reply per message over a slot.

A slot is a unix stream socket pair between the milter process and one thread of a worker
process (mta/pool.py, mta/worker.py). Per message:

    request   REQUEST header | envelope (codec) | message bytes      [+ a spool file descriptor]
    reply     REPLY header   | payload (codec: the Decision and what the engine reported, or
                                        the error text)

A message kept in memory (up to milter.spool_bytes) crosses once, in the request. A message
spooled to disk does not cross at all: its header section goes in the request and the open
spool file's descriptor rides along (SCM_RIGHTS); the worker reads the body from the file.
One sendmsg() per request and, for ordinary mail, one recv() per reply keep the system calls
to a minimum (each one costs the milter a release and a retake of the GIL).
"""
from __future__ import annotations

import array
import os
import socket
import struct
import time
from dataclasses import dataclass

# envelope length, message bytes in the request, body bytes in the passed file, flags
REQUEST = struct.Struct("<IIIB")
# status, payload length
REPLY = struct.Struct("<BI")
TRUNCATED, BODY_IN_FILE = 1, 2
OK, FAILED = 0, 1
_FD_SPACE = socket.CMSG_SPACE(array.array("i").itemsize)
FIRST_READ = 1 << 16  # an ordinary message, its envelope and header in one read
REPLY_READ = 1 << 14  # a decision with its reasons: a few hundred bytes, rarely more


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One message as a worker receives it."""

    envelope: bytes
    data: bytes  # the whole message, or its header section when the body is in body_fd
    body_fd: int | None
    body_len: int
    truncated: bool


# --- the milter's side -----------------------------------------------------------------------

def send_request(sock: socket.socket, envelope: bytes, data: bytes, *, truncated: bool,
                 body_fd: int | None = None, body_len: int = 0) -> None:
    """Send one message to the worker behind sock (in timeout mode: raises TimeoutError)."""
    flags = (TRUNCATED if truncated else 0) | (BODY_IN_FILE if body_fd is not None else 0)
    buffers = [REQUEST.pack(len(envelope), len(data), body_len, flags), envelope, data]
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [body_fd]))] if body_fd is not None else []
    sent = sock.sendmsg(buffers, ancillary)
    # The descriptor went with the first byte; a large message may need more calls.
    for buf in buffers:
        if sent >= len(buf):
            sent -= len(buf)
            continue
        sock.sendall(memoryview(buf)[sent:])
        sent = 0


def recv_reply(sock: socket.socket, deadline: float) -> tuple[int, bytes]:
    """(status, payload) of the reply; TimeoutError at the deadline, ConnectionError on EOF."""
    buf = b""
    need = REPLY.size
    status = -1
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no reply before the deadline")
        sock.settimeout(remaining)
        chunk = sock.recv(max(REPLY_READ, need - len(buf)))
        if not chunk:
            raise ConnectionError("the worker closed the connection")
        buf += chunk
        if status < 0 and len(buf) >= REPLY.size:
            status, length = REPLY.unpack_from(buf)
            need = REPLY.size + length
        if status >= 0 and len(buf) >= need:
            if len(buf) > need:
                raise ConnectionError("the worker sent more than one reply")
            return status, buf[REPLY.size:]


# --- the worker's side -----------------------------------------------------------------------

def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """n bytes from a blocking socket, or None at EOF."""
    if n == 0:
        return b""
    data = sock.recv(n, socket.MSG_WAITALL)
    while 0 < len(data) < n:  # MSG_WAITALL returns early on a signal
        more = sock.recv(n - len(data), socket.MSG_WAITALL)
        if not more:
            return None
        data += more
    return data if len(data) == n else None


def recv_request(sock: socket.socket) -> Request | None:
    """The next message, or None when the milter closed the slot.

    One recvmsg() reads an ordinary message whole (header, envelope and bytes arrive together,
    sent by one sendmsg()); a larger one takes the rest with MSG_WAITALL.
    """
    chunk, ancillary, _, _ = sock.recvmsg(FIRST_READ, _FD_SPACE)
    fds = [fd for level, kind, payload in ancillary
           if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
           for fd in array.array("i", payload[: len(payload) - len(payload) % 4])]
    try:
        if not chunk:
            return None
        if len(chunk) < REQUEST.size:
            rest = _recv_exact(sock, REQUEST.size - len(chunk))
            if rest is None:
                return None
            chunk += rest
        env_len, data_len, body_len, flags = REQUEST.unpack_from(chunk)
        need = REQUEST.size + env_len + data_len
        if len(chunk) < need:
            rest = _recv_exact(sock, need - len(chunk))
            if rest is None:
                return None
            chunk += rest
        elif len(chunk) > need:
            raise ConnectionError("the milter sent a second request before the answer to the first")
        start = REQUEST.size + env_len
        body_fd = fds.pop(0) if flags & BODY_IN_FILE and fds else None
        if flags & BODY_IN_FILE and body_fd is None:
            raise ConnectionError("a spooled message arrived without its file")
        return Request(envelope=chunk[REQUEST.size:start], data=chunk[start:need], body_fd=body_fd,
                       body_len=body_len, truncated=bool(flags & TRUNCATED))
    finally:
        for fd in fds:  # anything unexpected is closed, never leaked
            os.close(fd)


def read_body(fd: int, length: int) -> bytes:
    """The spooled body from the passed file (its own offset is the milter's: pread)."""
    parts = []
    offset = 0
    while offset < length:
        chunk = os.pread(fd, min(length - offset, 1 << 20), offset)
        if not chunk:
            raise EOFError(f"spool file ended at {offset} of {length} bytes")
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)


def send_reply(sock: socket.socket, status: int, payload: bytes) -> None:
    """Answer one message."""
    sock.sendall(REPLY.pack(status, len(payload)) + payload)
