"""A milter client that talks to a milter as Postfix 3.7 does (protocol 6), for tests and benchmarks.

It offers what Postfix offers (every action, every protocol step and no-reply bit, leading
spaces in header values), sends the macros Postfix sends by default before each step (queue id,
addresses, daemon and client names), skips the steps the milter asked to skip, waits only for
the replies the milter did not waive, and records what end of message asked for (header
changes, quarantine, body replacement, the final reply). No Postfix, no network: a unix socket
or a loopback TCP port.

    conv = Conversation("unix:/path/milter.sock")   # or "inet:127.0.0.1:11332"
    result = conv.message(raw, queue_id="4ABC123")
    result.final, result.headers_added, result.quarantine
    conv.close()
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

SMFI_V6 = 6
# Postfix 3.7 offers every action and its whole V6 protocol mask (milter8.c).
POSTFIX_ACTIONS = 0x1FF
POSTFIX_PROTOCOL = 0x1FFFFF
HDR_LEADSPC = 0x100000
# Bits that waive a step (SMFIP_NO*) or its reply (SMFIP_NR_*), by command.
NO_BITS = {b"C": 0x1, b"H": 0x2, b"M": 0x4, b"R": 0x8, b"B": 0x10, b"L": 0x20, b"N": 0x40, b"T": 0x200}
NR_BITS = {b"C": 0x1000, b"H": 0x2000, b"M": 0x4000, b"R": 0x8000, b"T": 0x10000, b"N": 0x40000,
           b"B": 0x80000, b"L": 0x80}
FINAL = set(b"cartdy")  # continue, accept, reject, tempfail, discard, reply code: end an EOM's answer
CHUNK = 65535  # Postfix sends the body in chunks of at most this size


def packet(cmd: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data) + 1) + cmd + data


def read_packet(sock: socket.socket) -> tuple[bytes, bytes]:
    head = recv_exact(sock, 5)
    length = struct.unpack(">I", head[:4])[0]
    return head[4:5], recv_exact(sock, length - 1)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("milter closed the connection")
        buf += chunk
    return buf


def split(raw: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Header fields as Postfix passes them (name, value with its folds and leading space) and
    the body with CRLF line ends."""
    raw = raw.replace(b"\r\n", b"\n")
    head, _, body = raw.partition(b"\n\n")
    fields: list[list[bytes]] = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1] += b"\n" + line
        elif b":" in line:
            name, _, value = line.partition(b":")
            fields.append([name, value])
    return [(n, v) for n, v in fields], body.replace(b"\n", b"\r\n")


def macros(stage: bytes, pairs: dict[str, str]) -> bytes:
    """An SMFIC_MACRO packet for stage, as Postfix sends before the stage's command."""
    return packet(b"D", stage + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in pairs.items()))


def connect(address: str, timeout: float | None = 60.0) -> socket.socket:
    """A socket to "unix:/path" or "inet:HOST:PORT" (Postfix spelling)."""
    kind, _, rest = address.partition(":")
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(rest)
        return sock
    host, _, port = rest.rpartition(":")
    sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # Postfix does too
    return sock


@dataclass(slots=True)
class EomResult:
    """What the milter asked for at end of message."""

    final: bytes  # the reply code: b"c" continue, b"a" accept, b"r" reject, b"t" tempfail, b"y" reply...
    reply: bytes = b""  # the text of a b"y" reply
    headers_added: list[tuple[str, str, int]] = field(default_factory=list)  # (name, value, index; -1 = append)
    headers_changed: list[tuple[str, int, str]] = field(default_factory=list)  # (name, index, value; "" = delete)
    quarantine: str | None = None
    body: bytes | None = None  # the replacement body, if any

    def header(self, name: str) -> list[str]:
        """Values of the header fields added with this name."""
        return [v for n, v, _ in self.headers_added if n.lower() == name.lower()]


def _strings(data: bytes) -> list[str]:
    return [p.decode("utf-8", "surrogateescape") for p in data.split(b"\0")]


class Conversation:
    """One MTA connection to the milter, any number of messages, Postfix's way."""

    def __init__(self, address: str, *, client_name: str = "client.sender.example", client_ip: str = "127.0.0.1",
                 helo: str = "client.sender.example", timeout: float | None = 60.0) -> None:
        self.sock = connect(address, timeout)
        self.sock.sendall(packet(b"O", struct.pack(">III", SMFI_V6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL)))
        cmd, data = read_packet(self.sock)
        if cmd != b"O":
            raise RuntimeError(f"negotiation answered {cmd!r}")
        self.actions, self.protocol = struct.unpack(">III", data[:12])[1:]
        script = Script(self.protocol)
        script.step(b"C", client_name.encode() + b"\0" + b"4" + struct.pack(">H", 40000) + client_ip.encode() + b"\0",
                    {"j": "mx.test.example", "{daemon_name}": "smtpd", "{daemon_addr}": "127.0.0.1",
                     "v": "Postfix 3.7.11", "_": f"{client_name} [{client_ip}]"})
        script.step(b"H", helo.encode() + b"\0")
        self._run(script.segments + [bytes(script.pending)], final=False)

    def _run(self, segments: list[bytes], *, final: bool) -> EomResult | None:
        """Send each segment; wait for the reply that ends it (the last one: end of message's)."""
        for i, segment in enumerate(segments):
            if segment:
                self.sock.sendall(segment)
            if i < len(segments) - 1:
                reply, text = read_packet(self.sock)
                if reply not in (b"c", b"a"):
                    raise RuntimeError(f"a step was answered {reply!r} {text[:80]!r}")
        return self._eom() if final else None

    def prepare(self, raw: bytes, **envelope: object) -> list[bytes]:
        """The packets of one message for this connection, ready to send (send_prepared)."""
        fields, body = split(raw)
        return message_script(self.protocol, fields, body, **envelope)  # type: ignore[arg-type]

    def send_prepared(self, segments: list[bytes]) -> EomResult:
        result = self._run(segments, final=True)
        assert result is not None
        return result

    def message(self, raw: bytes, **envelope: object) -> EomResult:
        """Send one message (mail_from=, rcpts=, queue_id=); returns what end of message asked for."""
        return self.send_prepared(self.prepare(raw, **envelope))

    def _eom(self) -> EomResult:
        result = EomResult(final=b"")
        while True:
            reply, data = read_packet(self.sock)
            if reply[0] in FINAL:
                result.final = reply
                result.reply = data.rstrip(b"\0")
                return result
            if reply in (b"h", b"i"):  # add / insert header
                if reply == b"i":
                    idx = struct.unpack(">I", data[:4])[0]
                    data = data[4:]
                else:
                    idx = -1
                name, value = _strings(data)[:2]
                result.headers_added.append((name, value, idx))
            elif reply == b"m":  # change header
                idx = struct.unpack(">I", data[:4])[0]
                name, value = _strings(data[4:])[:2]
                result.headers_changed.append((name, idx, value))
            elif reply == b"q":
                result.quarantine = data.rstrip(b"\0").decode("utf-8", "replace")
            elif reply == b"b":
                result.body = (result.body or b"") + data
            # progress ("p") and anything else: keep reading

    def close(self) -> None:
        try:
            self.sock.sendall(packet(b"Q"))
        except OSError:
            pass
        finally:
            self.sock.close()

    def __enter__(self) -> "Conversation":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Script:
    """The packets Postfix would send, cut where it waits for a reply."""

    def __init__(self, protocol: int) -> None:
        self.protocol = protocol
        self.segments: list[bytes] = []
        self.pending = bytearray()

    def step(self, cmd: bytes, data: bytes = b"", macro: dict[str, str] | None = None) -> None:
        """A step (and its macros) unless the milter skipped it; a cut unless it waived the reply."""
        if self.protocol & NO_BITS.get(cmd, 0):
            return
        if macro:
            self.pending += macros(cmd, macro)
        self.pending += packet(cmd, data)
        if not self.protocol & NR_BITS.get(cmd, 0):
            self.segments.append(bytes(self.pending))
            self.pending = bytearray()


def message_script(protocol: int, fields: list[tuple[bytes, bytes]], body: bytes, *,
                   mail_from: str = "bench@sender.example", rcpts: tuple[str, ...] = ("sink@elsewhere.example",),
                   queue_id: str = "") -> list[bytes]:
    """One message as segments: send one, read its reply, send the next; the last ends with EOM."""
    script = Script(protocol)
    qid = {"i": queue_id} if queue_id else {}
    domain = mail_from.rpartition("@")[2]
    script.step(b"M", f"<{mail_from}>".encode() + b"\0",
                {**qid, "{mail_addr}": mail_from, "{mail_host}": domain, "{mail_mailer}": "smtp"})
    for rcpt in rcpts:
        script.step(b"R", f"<{rcpt}>".encode() + b"\0",
                    {**qid, "{rcpt_addr}": rcpt, "{rcpt_host}": rcpt.rpartition("@")[2], "{rcpt_mailer}": "smtp"})
    script.step(b"T", b"", qid)
    leading = protocol & HDR_LEADSPC
    for name, value in fields:
        script.step(b"L", name + b"\0" + (value if leading else value.lstrip(b" \t")) + b"\0")
    script.step(b"N", b"", qid)
    for i in range(0, len(body), CHUNK):
        script.step(b"B", body[i:i + CHUNK])
    if queue_id:
        script.pending += macros(b"E", qid)
    script.pending += packet(b"E")
    return script.segments + [bytes(script.pending)]
