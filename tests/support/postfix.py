"""A private Postfix instance on loopback for end-to-end tests (nothing in /etc/postfix touched).

The instance lives in one temporary directory: config, queue, data, Maildir and log. It has
named SMTP listeners on free loopback ports, each with its own `smtpd_milters` (a listener
with milter "" is the no-milter baseline). Mail for `test.example` is delivered to
`<root>/mail/inbox/` (Maildir); anything else is discarded, so nothing is ever relayed.

Import the fixtures explicitly in a test module: `from support.postfix import postfix_instance`.
"""
from __future__ import annotations

import email
import email.policy
import json
import os
import re
import pwd
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Callable, Iterator

import pytest
from support.gate import server_started, unavailable

POSTFIX = shutil.which("postfix", path="/usr/sbin:/usr/bin:" + os.environ.get("PATH", ""))
TEST_DOMAIN = "test.example"

# Only the services a local-delivery instance needs; chroot is off everywhere (column 5 = n)
# because the queue lives outside /var/spool/postfix. No smtp/relay/local client services:
# the instance cannot relay mail anywhere even if misconfigured.
MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_available() -> str | None:
    """None when a private Postfix can run here, else the reason it cannot."""
    if POSTFIX is None:
        return "postfix is not installed (apt-get install postfix)"
    if os.geteuid() != 0:
        return "a private Postfix instance needs root (postfix start)"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "no 'postfix' user on this machine"
    return None


def require_postfix() -> None:
    """Skip (or fail under CI=true) when Postfix cannot run here, saying why."""
    reason = postfix_available()
    if reason is not None:
        unavailable("Postfix", reason)


def free_port() -> int:
    """A loopback TCP port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shared_tmpdir(prefix: str) -> Path:
    """A temp dir that the postfix user can traverse (pytest's tmp_path is 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def strip_mbox_from(raw: bytes) -> bytes:
    """Drop an mbox 'From ' separator line if the file starts with one."""
    if raw.startswith(b"From "):
        return raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    return raw


@dataclass(slots=True)
class Delivered:
    """One message found in the test Maildir."""

    path: Path
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[return-value]


@dataclass(slots=True)
class PostfixInstance:
    """A private Postfix with named loopback listeners and Maildir delivery for test.example."""

    root: Path
    listeners: dict[str, int] = field(default_factory=dict)
    milters: dict[str, str] = field(default_factory=dict)
    running: bool = False

    @property
    def confdir(self) -> Path:
        return self.root / "conf"

    @property
    def maildir(self) -> Path:
        return self.root / "mail" / "inbox"

    @property
    def maillog(self) -> Path:
        return self.root / "maillog"

    # --- lifecycle -------------------------------------------------------------------
    @property
    def queue_dir(self) -> Path:
        return self.root / "queue"

    @classmethod
    def create(cls, listeners: dict[str, str], *, main_cf: dict[str, str] | None = None,
               root: Path | None = None, chroot: bool = False,
               listener_options: dict[str, dict[str, str]] | None = None) -> "PostfixInstance":
        """Write config for listeners {name: milter spec in Postfix spelling or ""}.

        chroot: the listeners' smtpd runs chrooted in the queue directory (master.cf column 5 =
        y), as Debian's does; it then sees the milter socket relative to that directory.
        listener_options: extra `-o name=value` per listener (no spaces in values)."""
        root = root or shared_tmpdir("otpguard-postfix-")
        inst = cls(root=root)
        conf = inst.confdir
        conf.mkdir(parents=True, exist_ok=True)
        # The queue directory must exist (root-owned); postfix creates its subdirectories.
        (root / "queue").mkdir(mode=0o755, exist_ok=True)
        (root / "mail").mkdir(exist_ok=True)
        pw = pwd.getpwnam("postfix")
        os.chown(root / "mail", pw.pw_uid, pw.pw_gid)
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(root / "queue"),
            # data_directory must not exist beforehand: postfix creates it with its owner.
            "data_directory": str(root / "data"),
            "meta_directory": "/etc/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "mx.test.example",
            "mydomain": "test.example",
            "myorigin": "test.example",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "relay_domains": "",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "virtual_mailbox_domains": TEST_DOMAIN,
            "virtual_mailbox_base": str(root / "mail"),
            "virtual_mailbox_maps": "static:inbox/",
            "virtual_uid_maps": f"static:{pw.pw_uid}",
            "virtual_gid_maps": f"static:{pw.pw_gid}",
            "virtual_minimum_uid": str(min(pw.pw_uid, 100)),
            # Everything not for test.example is thrown away: corpus mail never leaves.
            "default_transport": "discard:sink",
            "relay_transport": "discard:sink",
            "local_transport": "discard:sink",
            "maillog_file": str(root / "maillog"),
            "maillog_file_prefixes": str(root),
            "smtpd_milters": "",
            "non_smtpd_milters": "",
            "milter_protocol": "6",
            # What the deployment snippet recommends: a dead milter defers mail, never loses it.
            "milter_default_action": "tempfail",
            "milter_connect_timeout": "5s",
            "milter_command_timeout": "15s",
            "milter_content_timeout": "30s",
            "in_flow_delay": "0",
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "1000",
            "smtpd_hard_error_limit": "1000",
            "smtpd_client_connection_count_limit": "0",
            "default_process_limit": "100",
            "queue_run_delay": "2s",
            "minimal_backoff_time": "2s",
            "maximal_backoff_time": "4s",
            "biff": "no",
            "smtputf8_enable": "yes",
            "message_size_limit": str(50 * 1024 * 1024),
            "virtual_mailbox_limit": str(60 * 1024 * 1024),
        }
        settings.update(main_cf or {})
        (conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        lines = [MASTER_CF]
        for name, milter in listeners.items():
            port = free_port()
            inst.listeners[name] = port
            inst.milters[name] = milter
            # -o values may not contain spaces; milter specs never do.
            extra = "".join(f" -o {k}={v}" for k, v in (listener_options or {}).get(name, {}).items())
            lines.append(f"127.0.0.1:{port} inet n - {'y' if chroot else 'n'} - - smtpd -o syslog_name=postfix/{name}"
                         f" -o smtpd_milters={milter}{extra}\n")
        (conf / "master.cf").write_text("".join(lines))
        return inst

    def postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `postfix -c CONF args...`."""
        return subprocess.run([POSTFIX or "postfix", "-c", str(self.confdir), *args],
                              capture_output=True, text=True, check=check, timeout=60)

    def start(self) -> None:
        """Start the instance and wait until every listener accepts connections."""
        res = self.postfix("check", check=False)
        if res.returncode != 0:
            raise RuntimeError(f"postfix check failed: {res.stderr}{res.stdout}")
        server_started("postfix")
        res = self.postfix("start", check=False)
        if res.returncode != 0:
            raise RuntimeError(f"postfix start failed: {res.stderr}{res.stdout}\n{self.log_tail()}")
        self.running = True
        deadline = time.monotonic() + 20
        for port in self.listeners.values():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"postfix listener {port} did not come up\n{self.log_tail()}")
                    time.sleep(0.1)

    def stop(self) -> None:
        """Stop the instance (queue and log stay for inspection until cleanup)."""
        if self.running:
            self.postfix("stop", check=False)
            self.running = False

    def cleanup(self) -> None:
        """Stop and remove the whole directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the instance's maillog, for assertion messages."""
        try:
            return "\n".join(self.maillog.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no maillog)"

    # --- sending ---------------------------------------------------------------------
    def send(self, raw: bytes, *, listener: str, mail_from: str = "sender@sender.example",
             rcpts: tuple[str, ...] = (f"user@{TEST_DOMAIN}",)) -> tuple[int, bytes]:
        """Send one message over SMTP; returns the reply (code, text) to end of DATA."""
        raw = strip_mbox_from(raw)
        with smtplib.SMTP("127.0.0.1", self.listeners[listener], timeout=60) as smtp:
            smtp.ehlo("client.sender.example")
            code, msg = smtp.mail(mail_from)
            if code != 250:
                return code, msg
            for rcpt in rcpts:
                code, msg = smtp.rcpt(rcpt)
                if code not in (250, 251):
                    return code, msg
            # smtplib dot-stuffs and fixes line endings; raw 8-bit bytes pass unchanged.
            code, msg = smtp.data(raw)
            return code, msg

    # --- queue and mailbox ------------------------------------------------------------
    def queue(self) -> list[dict]:
        """All queued messages as postqueue -j JSON objects."""
        res = subprocess.run(["postqueue", "-c", str(self.confdir), "-j"], capture_output=True,
                             text=True, timeout=30)
        return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]

    def held(self) -> list[dict]:
        """Messages in the hold queue."""
        return [q for q in self.queue() if q.get("queue_name") == "hold"]

    def postcat(self, queue_id: str) -> bytes:
        """Headers and body of a queued message (postcat -hbq)."""
        res = subprocess.run(["postcat", "-c", str(self.confdir), "-hbq", queue_id],
                             capture_output=True, timeout=30)
        return res.stdout

    def delete_all(self) -> None:
        """Empty every queue (postsuper -d ALL)."""
        subprocess.run(["postsuper", "-c", str(self.confdir), "-d", "ALL"],
                       capture_output=True, timeout=30)

    def delivered(self) -> list[Delivered]:
        """Messages in the test Maildir (new/ and cur/), oldest first."""
        out = []
        for sub in ("new", "cur"):
            d = self.maildir / sub
            if d.is_dir():
                out += [Delivered(path=p, raw=p.read_bytes()) for p in d.iterdir() if p.is_file()]
        return sorted(out, key=lambda m: (m.path.stat().st_mtime, m.path.name))

    def clear_mailbox(self) -> None:
        """Remove delivered messages."""
        for sub in ("new", "cur"):
            d = self.maildir / sub
            if d.is_dir():
                for p in d.iterdir():
                    p.unlink()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20, what: str = "condition") -> None:
        """Poll until predicate() is true; fail with the maillog tail after timeout."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n--- maillog ---\n{self.log_tail()}")
            time.sleep(0.05)

    def wait_delivered(self, marker: bytes, timeout: float = 20) -> Delivered:
        """Wait until a message containing marker is in the Maildir and return it."""
        found: list[Delivered] = []

        def check() -> bool:
            found[:] = [m for m in self.delivered() if marker in m.raw]
            return bool(found)

        self.wait_for(check, timeout, f"delivery of {marker!r}")
        return found[0]

    def wait_held(self, count: int = 1, timeout: float = 20) -> list[dict]:
        """Wait until at least count messages sit in the hold queue."""
        held: list[dict] = []

        def check() -> bool:
            held[:] = self.held()
            return len(held) >= count

        self.wait_for(check, timeout, f"{count} held message(s)")
        return held


def postfix_instance_factory(listeners: dict[str, str], **kw) -> Iterator[PostfixInstance]:
    """Create, start, yield and always clean up an instance (for use inside fixtures)."""
    require_postfix()
    inst = PostfixInstance.create(listeners, **kw)
    try:
        inst.start()
        yield inst
    finally:
        inst.cleanup()


@pytest.fixture(scope="module")
def postfix_plain() -> Iterator[PostfixInstance]:
    """A module-wide private Postfix with one listener "plain" without milter."""
    yield from postfix_instance_factory({"plain": ""})


OTPGUARD = str(Path(sys.executable).parent / "otpguard")


def write_test_config(path: Path, *, socket_spec: str, changes: dict[str, str] | None = None,
                      source: Path | None = None) -> Path:
    """The shipped conf/otpguard.toml for tests: brands by absolute path, no DNS, no metrics.

    `changes` maps exact lines of the shipped file to replacement lines (e.g. an [actions]
    level); a line that is not found is an error, so a test never silently runs the default.
    """
    source = source or Path(__file__).resolve().parents[2] / "conf" / "otpguard.toml"
    text = source.read_text()
    base = {
        'brands = ["brands/amazon.toml"]': f'brands = ["{source.parent}/brands/amazon.toml"]',
        'socket = "unix:/var/spool/postfix/otpguard/otpguard.sock"': f'socket = "{socket_spec}"',
        "verify = true": "verify = false",
        "[metrics]\nenabled = true": "[metrics]\nenabled = false",
    }
    for old, new in {**base, **(changes or {})}.items():
        if old not in text:
            raise KeyError(f"line not in {source}: {old!r}")
        text = text.replace(old, new, 1)
    path.write_text(text)
    return path


@dataclass(slots=True)
class OtpguardServer:
    """`otpguard serve` as a subprocess, with its log in a file."""

    config: Path
    socket: str
    log: Path
    env: dict[str, str] | None = None
    command: tuple[str, ...] = (OTPGUARD, "serve")
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> "OtpguardServer":
        """Start and wait for the "listening" log event."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as err:
            server_started("otpguard")
            self.proc = subprocess.Popen([*self.command, "--config", str(self.config), "--socket", self.socket],
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         env={**os.environ, **(self.env or {})})
        deadline = time.monotonic() + timeout
        while True:
            text = self.log.read_bytes()[offset:]
            if b'"event":"listening"' in text or b"event=listening" in text:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"otpguard serve exited with {self.proc.returncode}:\n{text.decode(errors='replace')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"otpguard serve did not start:\n{text.decode(errors='replace')}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, signum: int) -> None:
        """Send a signal to the server process."""
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None

    def kill(self) -> None:
        """SIGKILL, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def events(self, name: str | None = None) -> list[dict]:
        """Parsed JSON log lines (the test configs log in JSON), optionally one event only."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                item = json.loads(line)
                if name is None or item.get("event") == name:
                    out.append(item)
        return out


# -- reading delivered messages ---------------------------------------------------------------

def fields(raw: bytes) -> list[tuple[str, str]]:
    """Header fields (name, unfolded value) of a delivered message; continuation lines joined."""
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("utf-8", "surrogateescape")
    out: list[list[str]] = []
    for line in head.split("\n"):
        if line[:1] in (" ", "\t") and out:
            out[-1][1] += line
        else:
            name, _, value = line.partition(":")
            out.append([name, value.strip()])
    return [(n, v) for n, v in out]


def header(raw: bytes, name: str) -> list[str]:
    """Every value of one header field of a delivered message."""
    return [v for n, v in fields(raw) if n.lower() == name.lower()]


def delivered_by_queue_id(pf: "PostfixInstance") -> dict[str, bytes]:
    """Maildir messages keyed by the queue id in Postfix's own (first) Received header."""
    out = {}
    for m in pf.delivered():
        hit = re.search(rb"\n\s+by mx\.test\.example \(Postfix\) with E?SMTP id ([0-9A-Za-z]+)", m.raw)
        if hit:
            out[hit.group(1).decode()] = m.raw
    return out
