"""Real DNS for tests: dnsmasq on loopback serving zones given as data, a black hole, DKIM/ARC keys.

Test modules import the fixtures they use explicitly, e.g.
`from support.dnsserver import dnsmasq_factory, dkim_keyring  # noqa: F401`.
"""
from __future__ import annotations

import base64
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import dkim  # type: ignore[import-untyped]
import dns.exception
import dns.message
import dns.query
import pytest
from support.gate import server_started, unavailable

# name -> record type -> values. TXT: strings (split into <=255-octet character-strings here);
# A/AAAA: addresses; MX: (preference, exchange); CNAME: one target; PTR: targets.
RecordValue = str | tuple[int, str]
Zones = Mapping[str, Mapping[str, Sequence[RecordValue]]]

DNSMASQ_CANDIDATES = ("/usr/sbin/dnsmasq", "/usr/bin/dnsmasq")


def dnsmasq_path() -> str | None:
    """The dnsmasq binary (OTPGUARD_DNSMASQ overrides the search), or None when it is missing."""
    override = os.environ.get("OTPGUARD_DNSMASQ")
    if override is not None:
        return override if override and os.access(override, os.X_OK) else None
    found = shutil.which("dnsmasq")
    if found:
        return found
    return next((p for p in DNSMASQ_CANDIDATES if os.access(p, os.X_OK)), None)


def require(what: str, available: bool, hint: str) -> None:
    """Skip (with the reason printed) when a real component is missing; fail instead in CI."""
    if available:
        return
    unavailable(what, hint)


def require_dnsmasq() -> str:
    path = dnsmasq_path()
    require("dnsmasq", path is not None, "install the Debian package dnsmasq-base (make setup)")
    assert path is not None
    return path


def _port_free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """A loopback port free for both UDP and TCP right now."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if _port_free(port):
            return port
    raise RuntimeError("no free loopback port for UDP and TCP")


def _quote(chunk: str) -> str:
    return '"' + chunk.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_txt(value: str) -> list[str]:
    """A TXT value as character-strings of at most 255 octets each (RFC 1035 3.3.14)."""
    raw = value.encode("utf-8")
    if not raw:
        return [""]
    return [raw[i:i + 255].decode("utf-8") for i in range(0, len(raw), 255)]


def render_config(zones: Zones, *, port: int, ttl: int, log_file: Path | None = None) -> str:
    """A dnsmasq configuration that serves exactly these zones and says NXDOMAIN for all else."""
    lines = [
        f"port={port}",
        "listen-address=127.0.0.1",
        "bind-interfaces",
        "no-resolv",
        "no-hosts",
        "no-negcache",
        # Answer every other name NXDOMAIN ourselves instead of REFUSED (no upstream exists).
        "local=/#/",
        f"local-ttl={ttl}",
    ]
    if log_file is not None:
        lines += ["log-queries", f"log-facility={log_file}"]
    for name, rrsets in zones.items():
        owner = name.strip().rstrip(".").lower()
        for rtype, values in rrsets.items():
            kind = rtype.upper()
            for value in values:
                if kind == "TXT":
                    assert isinstance(value, str), f"TXT {owner}: {value!r}"
                    lines.append(f"txt-record={owner}," + ",".join(_quote(c) for c in split_txt(value)))
                elif kind in ("A", "AAAA"):
                    lines.append(f"host-record={owner},{value}")
                elif kind == "MX":
                    assert isinstance(value, tuple), f"MX {owner}: {value!r}"
                    pref, host = value
                    lines.append(f"mx-host={owner},{host},{pref}")
                elif kind == "CNAME":
                    lines.append(f"cname={owner},{value}")
                elif kind == "PTR":
                    lines.append(f"ptr-record={owner},{value}")
                else:
                    raise ValueError(f"record type {rtype} not supported by the test server")
    return "\n".join(lines) + "\n"


class DnsmasqServer:
    """One dnsmasq process on 127.0.0.1:<port> serving zones given as Python data."""

    def __init__(self, zones: Zones, *, ttl: int = 300, port: int | None = None,
                 workdir: Path | None = None, log_queries: bool = False) -> None:
        self.binary = require_dnsmasq()
        self.zones: Zones = zones
        self.ttl = ttl
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="otpguard-dnsmasq-"))
        self.log_queries = log_queries
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return "127.0.0.1"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> DnsmasqServer:
        if self.running:
            return self
        last_error = ""
        for attempt in range(5):
            if attempt:
                self.port = free_port()  # lost a race for the port: take another
            conf = self.workdir / "dnsmasq.conf"
            log_file = self.workdir / "queries.log" if self.log_queries else None
            conf.write_text(render_config(self.zones, port=self.port, ttl=self.ttl, log_file=log_file))
            err = (self.workdir / "stderr.log").open("wb")
            server_started("dnsmasq")
            self._proc = subprocess.Popen(
                [self.binary, "--keep-in-foreground", f"--conf-file={conf}", "--pid-file="],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            err.close()
            if self._wait_ready(5.0):
                return self
            last_error = (self.workdir / "stderr.log").read_text(errors="replace").strip()
            self._kill()
        raise RuntimeError(f"dnsmasq did not start on 127.0.0.1:{self.port}: {last_error}")

    def _wait_ready(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        query = dns.message.make_query("ready.probe.invalid", "A")
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            try:
                dns.query.udp(query, self.address, port=self.port, timeout=0.2)
                return True
            except (dns.exception.DNSException, OSError):
                time.sleep(0.02)
        return False

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def stop(self) -> None:
        """Stop the server; the port stays reserved in this object for a later start()."""
        self._kill()

    def restart(self, zones: Zones | None = None) -> DnsmasqServer:
        """Stop and start on the same port, optionally with new zones (dnsmasq rereads nothing on HUP)."""
        self._kill()
        if zones is not None:
            self.zones = zones
        return self.start()

    def close(self) -> None:
        self._kill()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> DnsmasqServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class BlackHoleServer:
    """A UDP and TCP listener on one loopback port that reads queries and never answers."""

    def __init__(self) -> None:
        self.port = 0
        self.received = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._socks: list[socket.socket] = []

    @property
    def address(self) -> str:
        return "127.0.0.1"

    def start(self) -> BlackHoleServer:
        for _ in range(50):
            port = free_port()
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                udp.bind(("127.0.0.1", port))
                tcp.bind(("127.0.0.1", port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(16)
            self.port, self._socks = port, [udp, tcp]
            break
        else:
            raise RuntimeError("no free port for the black hole")
        server_started("black-hole")
        self._thread = threading.Thread(target=self._run, name="dns-black-hole", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        udp, tcp = self._socks
        held: list[socket.socket] = []
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([udp, tcp, *held], [], [], 0.05)
                for s in readable:
                    if s is udp:
                        udp.recvfrom(65535)
                        self.received += 1
                    elif s is tcp:
                        conn, _ = tcp.accept()
                        held.append(conn)  # keep it open, say nothing
                    else:
                        if not s.recv(65535):
                            held.remove(s)
                            s.close()
                        else:
                            self.received += 1
        finally:
            for s in held:
                s.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for s in self._socks:
            s.close()
        self._socks = []

    def __enter__(self) -> BlackHoleServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


# -- DKIM and ARC test keys -------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class TestKey:
    """An RSA key pair: the PEM private key for dkimpy, the base64 SPKI for the DNS p= tag."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    private_pem: bytes
    public_b64: str

    def txt(self) -> str:
        """The DKIM key record (RFC 6376 3.6.1)."""
        return f"v=DKIM1; k=rsa; p={self.public_b64}"


def openssl_path() -> str | None:
    return shutil.which("openssl")


def make_rsa_key(bits: int = 1024) -> TestKey:
    """A fresh RSA key made with the openssl command (dkimpy reads PKCS#1 and PKCS#8 PEM)."""
    tool = openssl_path()
    require("openssl", tool is not None, "install the Debian package openssl")
    assert tool is not None
    pem = subprocess.run([tool, "genrsa", str(bits)], check=True, capture_output=True).stdout
    der = subprocess.run([tool, "rsa", "-pubout", "-outform", "DER"], input=pem, check=True,
                         capture_output=True).stdout
    return TestKey(private_pem=pem, public_b64=base64.b64encode(der).decode("ascii"))


@dataclass
class KeyRing:
    """Test keys by label, made once per session (key generation is the slow part)."""

    bits: int = 1024
    _keys: dict[str, TestKey] = field(default_factory=dict)

    def key(self, label: str, bits: int | None = None) -> TestKey:
        """The key for a label; bits only matter the first time a label is asked for."""
        if label not in self._keys:
            self._keys[label] = make_rsa_key(bits or self.bits)
        return self._keys[label]


def crlf(message: bytes) -> bytes:
    """Normalise line endings to CRLF, as a milter sees a message on the wire."""
    return re.sub(rb"\r?\n", b"\r\n", message)


DEFAULT_SIGNED = (b"from", b"to", b"subject", b"date", b"message-id", b"mime-version",
                  b"content-type", b"reply-to")


def dkim_sign(message: bytes, *, domain: str, selector: str, key: TestKey,
              headers: Sequence[bytes] | None = None, canonicalize: tuple[bytes, bytes] = (b"relaxed", b"simple"),
              signature_algorithm: bytes = b"rsa-sha256") -> bytes:
    """The message with a DKIM-Signature by domain/selector prepended."""
    msg = crlf(message)
    present = {ln.split(b":", 1)[0].strip().lower() for ln in msg.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
               if ln and ln[:1] not in (b" ", b"\t") and b":" in ln}
    wanted = [h for h in (headers or DEFAULT_SIGNED) if h.lower() in present or h.lower() == b"from"]
    sig = dkim.sign(msg, selector.encode(), domain.encode(), key.private_pem, include_headers=wanted,
                    canonicalize=canonicalize, signature_algorithm=signature_algorithm)
    return bytes(sig) + msg


def arc_seal(message: bytes, *, domain: str, selector: str, key: TestKey, srv_id: str,
             headers: Sequence[bytes] | None = None) -> bytes:
    """The message with the next ARC set (RFC 8617) prepended, sealed by domain/selector.

    dkimpy builds the ARC-Authentication-Results from the message's Authentication-Results
    headers whose authserv-id is srv_id, so add those first.
    """
    msg = crlf(message)
    wanted = list(headers or (b"from", b"to", b"subject", b"date", b"message-id"))
    arc_set = dkim.arc_sign(msg, selector.encode(), domain.encode(), key.private_pem, srv_id.encode(),
                            include_headers=wanted)
    if not arc_set:
        raise RuntimeError(f"dkimpy made no ARC set: no Authentication-Results by {srv_id} in the message")
    return b"".join(arc_set) + msg


def add_header(message: bytes, name: str, value: str) -> bytes:
    """The message with one header field prepended (as a receiving MTA adds trace fields)."""
    return f"{name}: {value}\r\n".encode() + crlf(message)


# -- pytest fixtures --------------------------------------------------------------------------

DnsmasqFactory = Callable[..., DnsmasqServer]


def _factory() -> Iterator[DnsmasqFactory]:
    servers: list[DnsmasqServer] = []

    def start(zones: Zones, *, ttl: int = 300, log_queries: bool = False) -> DnsmasqServer:
        server = DnsmasqServer(zones, ttl=ttl, log_queries=log_queries)
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def dnsmasq_factory() -> Iterator[DnsmasqFactory]:
    """Start dnsmasq servers for one test: `server = dnsmasq_factory(zones, ttl=300)`."""
    yield from _factory()


@pytest.fixture(scope="module")
def dnsmasq_module_factory() -> Iterator[DnsmasqFactory]:
    """Like dnsmasq_factory, but the servers live for the whole test module."""
    yield from _factory()


@pytest.fixture
def alarm() -> Iterator[None]:
    """A generous hard stop (20 s, SIGALRM): a hang fails one test instead of the whole run."""
    def expired(signum: int, frame: types.FrameType | None) -> None:
        raise TimeoutError("test took longer than 20 s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def black_hole() -> Iterator[BlackHoleServer]:
    """A DNS server that never answers, for timeout and budget tests."""
    with BlackHoleServer() as server:
        yield server


@pytest.fixture(scope="session")
def dkim_keyring() -> KeyRing:
    """RSA test keys by label, generated once per session."""
    return KeyRing()
