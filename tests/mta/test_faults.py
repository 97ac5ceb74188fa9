"""Robustness through a real Postfix (issue 6): faults under load and hostile input.

One private Postfix instance on loopback with three milter listeners, each with its own
`otpguard serve` on a unix socket:

- "main": the shipped config (no DNS), every verdict tagged; killed and restarted, reloaded
  under load, and fed header-injection attempts;
- "auth": sender authentication on (auth.verify = true) against a dnsmasq that knows no names,
  so our own Authentication-Results header is added;
- "hole": sender authentication on against a DNS server that never answers (BlackHoleServer).

- "wkill-accept" and "wkill-tempfail": two analysis workers each (milter.workers = 2), on_error
  accept and tempfail, with an engine that dawdles over marked messages
  (tests/fixtures/milter/slow_serve.py): one of their workers is killed under load.

Every milter runs two analysis worker processes (milter.workers = 2), whatever the host's CPUs.
Postfix uses milter_default_action = tempfail, as deploy/postfix/main.cf.snippet says. Mail is
generated (small ordinary messages) or taken from the fixtures, sent over loopback only and
delivered to the instance's own Maildir; nothing is relayed.
"""
from __future__ import annotations

import collections
import os
import queue
import re
import shutil
import signal
import smtplib
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from pathlib import Path
from typing import Iterator

import pytest

from support.dnsserver import BlackHoleServer, DnsmasqServer
from support.postfix import (OtpguardServer, PostfixInstance, fields, header,
                             postfix_instance_factory, require_postfix, shared_tmpdir,
                             write_test_config)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
AMAZON_OTP = FIXTURES / "auth" / "amazon_co_jp_otp.eml"

JSON_LOGS = {'format = "logfmt"': 'format = "json"'}
# Every verdict is delivered with our headers, so a delivered message shows it passed the milter.
TAG_ALL = {'clean = []': 'clean = ["tag"]',
           'genuine = []': 'genuine = ["tag"]',
           'phish = ["tag", "quarantine"]': 'phish = ["tag", "subject"]'}
# Every message to a worker, the small ones too (milter.inline_max_bytes = 0).
MAIN = {**JSON_LOGS, **TAG_ALL, 'workers = "auto"': "workers = 2", "inline_max_bytes = 2048": "inline_max_bytes = 0"}
# The second valid config for reloads under load: clean mail also gets a subject prefix.
RELOADED_PREFIX = "[RELOADED-B]"
MAIN_B = {**MAIN, 'clean = []': 'clean = ["tag", "subject"]',
          '[actions.subject_prefix]': f'[actions.subject_prefix]\nclean = "{RELOADED_PREFIX}"'}
HOLE_BUDGET = 1.0  # auth.message_budget of the black-hole milter, seconds


def write_verifying_config(path: Path, socket_spec: str, port: int, *, query_timeout: float = 2.0,
                           budget: float = 5.0) -> Path:
    """A test config with auth.verify = true against a DNS server on 127.0.0.1:port.

    write_test_config turns verification off by default; naming the line here keeps it on.
    """
    return write_test_config(path, socket_spec=socket_spec, changes={
        **MAIN,
        "verify = true": "verify = true",
        "nameservers = []": 'nameservers = ["127.0.0.1"]',
        "port = 53": f"port = {port}",
        "query_timeout = 2.0": f"query_timeout = {query_timeout}",
        "message_budget = 5.0": f"message_budget = {budget}"})


@dataclass
class Rig:
    work: Path
    pf: PostfixInstance
    main: OtpguardServer
    auth: OtpguardServer
    hole: OtpguardServer
    black_hole: BlackHoleServer
    config_main: Path
    wkill: dict[str, OtpguardServer]  # on_error -> a milter whose worker gets killed


SLOW_SERVE = Path(__file__).resolve().parents[1] / "fixtures" / "milter" / "slow_serve.py"
DAWDLE = "DAWDLE-IN-WORKER"  # messages with this marker take DAWDLE_SECONDS in the worker
DAWDLE_SECONDS = 3.0


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    work = shared_tmpdir("otpguard-faults-")
    (work / "sock").mkdir(mode=0o755)
    socks = {name: f"unix:{work}/sock/{name}.sock" for name in ("main", "auth", "hole", "wkill-accept",
                                                                  "wkill-tempfail")}
    servers: list[OtpguardServer] = []
    dnsmasq: DnsmasqServer | None = None
    black_hole = BlackHoleServer()
    postfix = postfix_instance_factory(socks, root=work / "postfix")
    try:
        pf = next(postfix)
        (work / "dnsmasq").mkdir()
        dnsmasq = DnsmasqServer({}, workdir=work / "dnsmasq").start()  # knows no names: NXDOMAIN for all
        black_hole.start()
        cfg_main = write_test_config(work / "main.toml", socket_spec=socks["main"], changes=MAIN)
        cfg_auth = write_verifying_config(work / "auth.toml", socks["auth"], dnsmasq.port)
        # Each query may wait 2 s, the message only 1 s in all: only the budget keeps it short.
        cfg_hole = write_verifying_config(work / "hole.toml", socks["hole"], black_hole.port,
                                          query_timeout=2.0, budget=HOLE_BUDGET)
        for name, cfg in (("main", cfg_main), ("auth", cfg_auth), ("hole", cfg_hole)):
            servers.append(OtpguardServer(config=cfg, socket=socks[name], log=work / f"{name}.log").start())
        wkill = {}
        for on_error in ("accept", "tempfail"):
            name = f"wkill-{on_error}"
            cfg = write_test_config(work / f"{name}.toml", socket_spec=socks[name],
                                    changes={**MAIN, 'on_error = "accept"': f'on_error = "{on_error}"'})
            wkill[on_error] = OtpguardServer(
                config=cfg, socket=socks[name], log=work / f"{name}.log", command=(sys.executable, str(SLOW_SERVE)),
                env={"OTPGUARD_TEST_SLOW": str(DAWDLE_SECONDS), "OTPGUARD_TEST_SLOW_MARKER": DAWDLE}).start()
            servers.append(wkill[on_error])
        yield Rig(work=work, pf=pf, main=servers[0], auth=servers[1], hole=servers[2],
                  black_hole=black_hole, config_main=cfg_main, wkill=wkill)
    finally:
        for server in servers:
            server.stop()
        postfix.close()
        black_hole.stop()
        if dnsmasq is not None:
            dnsmasq.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(autouse=True)
def empty_queue_and_mailbox(request) -> None:
    if "rig" in request.fixturenames:
        pf = request.getfixturevalue("rig").pf
        pf.delete_all()
        pf.clear_mailbox()


# --- helpers ---------------------------------------------------------------------------------

MESSAGE_ID = re.compile(rb"(?im)^Message-ID:[ \t]*(<[^>\r\n]+>)")


def ordinary_message(tag: str, i: int) -> tuple[str, bytes]:
    """A small ordinary message with a unique Message-ID."""
    mid = f"<{tag}-{i:05d}@load.sender.example>"
    raw = (f"From: Load Sender <load@sender.example>\r\nTo: user@test.example\r\n"
           f"Subject: status report {tag} {i}\r\nMessage-ID: {mid}\r\n"
           f"Date: Tue, 14 May 2024 09:12:45 +0000\r\nMIME-Version: 1.0\r\n"
           f"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
           f"Hello,\r\n\r\nthe nightly job {i} finished without errors. The next run is at 02:00.\r\n"
           f"Regards,\r\nthe build robot\r\n").encode()
    return mid, raw


@dataclass
class LoadResult:
    accepted: dict[str, int] = field(default_factory=dict)  # Message-ID -> attempts to get a 250
    tempfails: int = 0      # 4xx replies (every one of them retried)
    disconnects: int = 0    # connection refused or dropped outside the final-dot wait (retried)
    ambiguous: int = 0      # connection lost while waiting for the reply to the final dot
    failures: list[str] = field(default_factory=list)  # 5xx or deadline: must stay empty
    elapsed: float = 0.0


class SmtpLoad:
    """Concurrent SMTP sessions that push messages and retry every 4xx, like a sending MTA."""

    def __init__(self, port: int, messages: list[tuple[str, bytes]], *, sessions: int,
                 deadline: float, retry_delay: float = 0.25) -> None:
        self.port = port
        self.todo: queue.Queue[tuple[str, bytes]] = queue.Queue()
        for m in messages:
            self.todo.put(m)
        self.sessions = sessions
        self.deadline = deadline  # time.monotonic() value
        self.retry_delay = retry_delay
        self.result = LoadResult()
        self.replies: collections.Counter[int] = collections.Counter()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._started = 0.0

    @property
    def accepted(self) -> int:
        return len(self.result.accepted)

    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def start(self) -> "SmtpLoad":
        self._started = time.monotonic()
        self._threads = [threading.Thread(target=self._worker, name=f"smtp-load-{i}", daemon=True)
                         for i in range(self.sessions)]
        for t in self._threads:
            t.start()
        return self

    def join(self) -> LoadResult:
        for t in self._threads:
            t.join(max(1.0, self.deadline - time.monotonic() + 30))
        assert not any(t.is_alive() for t in self._threads), "SMTP load threads did not finish"
        self.result.elapsed = time.monotonic() - self._started
        return self.result

    def _note(self, **kw: int) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self.result, k, getattr(self.result, k) + v)

    def _connect(self) -> smtplib.SMTP:
        smtp = smtplib.SMTP("127.0.0.1", self.port, timeout=60)
        code, msg = smtp.ehlo("load.sender.example")
        if code != 250:
            smtp.close()
            raise smtplib.SMTPHeloError(code, msg)
        return smtp

    def _transaction(self, smtp: smtplib.SMTP, raw: bytes, phase: list[str]) -> tuple[int, bytes]:
        phase[0] = "mail"
        code, msg = smtp.mail("load@sender.example")
        if code != 250:
            return code, msg
        phase[0] = "rcpt"
        code, msg = smtp.rcpt("user@test.example")
        if code not in (250, 251):
            return code, msg
        phase[0] = "data"
        try:
            return smtp.data(raw)
        except smtplib.SMTPDataError as exc:  # the reply to DATA itself was not 354
            return exc.smtp_code, exc.smtp_error

    def _worker(self) -> None:
        smtp: smtplib.SMTP | None = None
        while True:
            try:
                mid, raw = self.todo.get_nowait()
            except queue.Empty:
                break
            attempts = 0
            while True:
                if time.monotonic() > self.deadline:
                    with self._lock:
                        self.result.failures.append(f"{mid}: deadline passed after {attempts} attempts")
                    break
                attempts += 1
                phase = ["connect"]
                try:
                    if smtp is None:
                        smtp = self._connect()
                    code, text = self._transaction(smtp, raw, phase)
                except smtplib.SMTPResponseException as exc:  # greeting or EHLO refused
                    code, text = exc.smtp_code, exc.smtp_error
                    smtp = _close(smtp)
                except (smtplib.SMTPServerDisconnected, OSError):
                    smtp = _close(smtp)
                    self._note(**{"ambiguous" if phase[0] == "data" else "disconnects": 1})
                    time.sleep(self.retry_delay)
                    continue
                with self._lock:
                    self.replies[code] += 1
                if code == 250:
                    with self._lock:
                        self.result.accepted[mid] = attempts
                    break
                smtp = _close(smtp)  # after a 4xx Postfix may have given up on the session
                if 400 <= code < 500:
                    self._note(tempfails=1)
                    time.sleep(self.retry_delay)
                    continue
                with self._lock:
                    self.result.failures.append(f"{mid}: {code} {text!r}")
                break
        _close(smtp)


def _close(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()
    return None


def maildir_message_ids(pf: PostfixInstance) -> collections.Counter[str]:
    """Message-IDs of everything in the test Maildir, with how often each was delivered."""
    out: collections.Counter[str] = collections.Counter()
    for sub in ("new", "cur"):
        d = pf.maildir / sub
        if not d.is_dir():
            continue
        for p in d.iterdir():
            m = MESSAGE_ID.search(p.read_bytes().split(b"\n\n", 1)[0])
            out[m.group(1).decode() if m else f"(no Message-ID: {p.name})"] += 1
    return out


def maildir_count(pf: PostfixInstance) -> int:
    return sum(len(os.listdir(pf.maildir / sub)) for sub in ("new", "cur") if (pf.maildir / sub).is_dir())


def wait_until(predicate, timeout: float, what: str, pf: PostfixInstance | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            tail = f"\n--- maillog ---\n{pf.log_tail()}" if pf is not None else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{tail}")
        time.sleep(0.1)






def verdict_headers(raw: bytes) -> list[str]:
    return header(raw, "X-OTPGuard-Verdict")


def atomic_write(path: Path, text: str) -> None:
    """Replace a file in one rename, so a reload never reads half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --- a. SIGKILL under load ---------------------------------------------------------------------

TOTAL_MESSAGES = 2000
SESSIONS = 20


@pytest.mark.integration
def test_sigkill_under_load_loses_nothing(rig: Rig) -> None:
    """kill -9 while 2,000 messages go over 20 sessions: 250 or a retried 4xx, then all delivered once."""
    pf, server = rig.pf, rig.main
    snippet = (Path(__file__).resolve().parents[2] / "deploy" / "postfix" / "main.cf.snippet").read_text()
    for setting in ("milter_default_action = tempfail", "milter_protocol = 6"):
        assert setting in snippet and setting in (pf.confdir / "main.cf").read_text(), setting
    messages = [ordinary_message("kill", i) for i in range(TOTAL_MESSAGES)]
    load = SmtpLoad(pf.listeners["main"], messages, sessions=SESSIONS,
                    deadline=time.monotonic() + 150).start()
    killed_at = restarted_at = None
    try:
        wait_until(lambda: load.accepted >= TOTAL_MESSAGES // 4, 60, "a quarter of the messages accepted", pf)
        killed_at = load.accepted
        server.kill()  # SIGKILL: no drain, no socket cleanup, messages in flight lost by the milter
        tempfails_before = load.result.tempfails
        # Senders keep going against the dead milter: Postfix must answer 4xx, never 250 or 5xx.
        wait_until(lambda: load.result.tempfails >= tempfails_before + SESSIONS, 30,
                   "4xx replies while the milter is dead", pf)
        accepted_while_dead = load.accepted - killed_at
        restarted_at = load.accepted
        server.start()  # on the stale socket the crash left behind
    finally:
        result = load.join()
    assert not result.failures, result.failures[:10]
    assert len(result.accepted) == TOTAL_MESSAGES
    # Messages finished between the kill and Postfix noticing it are at most one per session.
    assert accepted_while_dead <= SESSIONS, accepted_while_dead
    assert result.tempfails >= SESSIONS
    retried = sum(1 for n in result.accepted.values() if n > 1)
    wait_until(lambda: maildir_count(pf) >= TOTAL_MESSAGES, 90,
               f"{TOTAL_MESSAGES} messages in the Maildir", pf)
    wait_until(lambda: pf.queue() == [], 30, "an empty queue", pf)
    delivered = maildir_message_ids(pf)
    expected = {mid for mid, _ in messages}
    lost = expected - set(delivered)
    duplicated = {mid: n for mid, n in delivered.items() if n > 1}
    strangers = set(delivered) - expected
    print(f"\nSIGKILL under load: {TOTAL_MESSAGES} messages over {SESSIONS} sessions in "
          f"{result.elapsed:.1f}s; killed after {killed_at} accepted, restarted after {restarted_at}; "
          f"{result.tempfails} 4xx replies, {retried} messages needed a retry, "
          f"{result.disconnects} refused/dropped connections, {result.ambiguous} ambiguous; "
          f"replies {dict(load.replies)}; delivered {sum(delivered.values())}, lost {len(lost)}, "
          f"duplicated {len(duplicated)}")
    assert not lost, sorted(lost)[:10]
    assert not strangers, sorted(strangers)[:10]
    # A 4xx means Postfix kept nothing: only a reply lost in transit may legitimately duplicate.
    assert sum(n - 1 for n in duplicated.values()) <= result.ambiguous, duplicated
    # No message went around the milter: each delivered copy carries exactly one verdict of ours.
    for sub in ("new", "cur"):
        for p in (pf.maildir / sub).iterdir():
            raw = p.read_bytes()
            assert len(verdict_headers(raw)) == 1, (p.name, verdict_headers(raw))


# --- a2. SIGKILL of one analysis worker under load --------------------------------------------

def current_workers(server: OtpguardServer) -> list[int]:
    """Pids of the workers running now: the last pool started, with the replacements since."""
    pids = list(server.events("workers")[-1]["pids"])
    for lost, started in zip(server.events("worker_lost"), server.events("worker_started")):
        pids = [started["pid"] if p == lost["pid"] else p for p in pids]
    return pids


@pytest.mark.integration
@pytest.mark.parametrize("on_error", ["accept", "tempfail"])
def test_sigkill_of_a_worker_under_load_costs_only_its_messages(rig: Rig, on_error: str) -> None:
    """kill -9 of one of two analysis workers while 2,000 messages go over 20 sessions.

    Four marked messages dawdle in the workers when the kill comes (spread over both, as the
    least busy worker is always chosen), so the killed worker surely holds messages. Those, and only
    those, get the on_error answer: tagged "error" and delivered (accept), or 4xx and sent again
    by the client (tempfail). Nothing is lost, the milter and every connection live on, and the
    worker is replaced."""
    pf, server = rig.pf, rig.wkill[on_error]
    lost_before, started_before = len(server.events("worker_lost")), len(server.events("worker_started"))
    lines_before = len(server.events("message"))
    messages = [ordinary_message(f"wkill-{on_error}", i) for i in range(TOTAL_MESSAGES)]
    dawdlers = [(mid.replace("@", "-dawdle@"), raw.replace(b"Regards,", DAWDLE.encode() + b"\r\nRegards,")
                 .replace(mid.encode(), mid.replace("@", "-dawdle@").encode()))
                for mid, raw in (ordinary_message(f"wkill-{on_error}", TOTAL_MESSAGES + i) for i in range(4))]
    load = SmtpLoad(pf.listeners[f"wkill-{on_error}"], messages, sessions=SESSIONS,
                    deadline=time.monotonic() + 180).start()
    side = None
    try:
        wait_until(lambda: load.accepted >= TOTAL_MESSAGES // 4, 90, "a quarter of the messages accepted", pf)
        victim = current_workers(server)[0]
        side = SmtpLoad(pf.listeners[f"wkill-{on_error}"], dawdlers, sessions=4,
                        deadline=time.monotonic() + 120).start()
        time.sleep(DAWDLE_SECONDS / 2)  # the four are in the workers now
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(server.events("worker_started")) > started_before, 30, "a replacement worker")
    finally:
        result = load.join()
        side_result = side.join() if side is not None else None
    assert side_result is not None
    assert not result.failures and not side_result.failures, (result.failures + side_result.failures)[:10]
    assert len(result.accepted) == TOTAL_MESSAGES and len(side_result.accepted) == 4
    assert result.disconnects == side_result.disconnects == 0  # no connection was dropped
    expected = {mid for mid, _ in messages} | {mid for mid, _ in dawdlers}
    wait_until(lambda: maildir_count(pf) >= len(expected), 90, f"{len(expected)} messages in the Maildir", pf)
    delivered = maildir_message_ids(pf)
    lost = expected - set(delivered)
    assert not lost, sorted(lost)[:10]
    assert set(delivered) == expected
    assert sum(n - 1 for n in delivered.values()) <= result.ambiguous + side_result.ambiguous
    # The worker's end: one log line with its cause, one replacement.
    ends = server.events("worker_lost")[lost_before:]
    assert [(e["pid"], e["cause"], e["replaced"]) for e in ends] == [(victim, "killed by SIGKILL", "yes")]
    # The messages it held, and only those, were answered per on_error, each with one line.
    lines = server.events("message")[lines_before:]
    errors = [e for e in lines if "error" in e]
    assert 1 <= len(errors) <= 4 + SESSIONS, errors
    assert all(e["error"].startswith("worker: ") and e["action"] == f"error-{on_error}" for e in errors), errors
    verdicts = collections.Counter()
    for sub in ("new", "cur"):
        for p in (pf.maildir / sub).iterdir():
            values = verdict_headers(p.read_bytes())
            assert len(values) == 1, (p.name, values)
            verdicts[values[0].split(";")[0]] += 1
    if on_error == "accept":
        assert verdicts["error"] == len(errors) and result.tempfails + side_result.tempfails == 0
        assert verdicts["clean"] == len(expected) - len(errors)
    else:  # deferred, sent again, and then analysed like the others
        assert verdicts == {"clean": len(expected)}
        assert result.tempfails + side_result.tempfails == len(errors)
    print(f"\nworker SIGKILL under load (on_error = {on_error}): {TOTAL_MESSAGES} + 4 messages over "
          f"{SESSIONS} + 4 sessions in {result.elapsed:.1f}s; worker {victim} killed; {len(errors)} messages "
          f"answered per on_error; verdicts {dict(verdicts)}; lost {len(lost)}")


# --- b. DNS that never answers ---------------------------------------------------------------

def amazon_otp(message_id: str) -> bytes:
    raw = AMAZON_OTP.read_bytes().replace(b"\r\n", b"\n")
    raw = re.sub(rb"(?m)^Message-ID: .*$", f"Message-ID: {message_id}".encode(), raw, count=1)
    raw = raw.replace(b"\nTo: user@example.org\n", b"\nTo: user@test.example\n", 1)
    return raw


def timed_send(pf: PostfixInstance, raw: bytes, listener: str, mail_from: str) -> tuple[int, bytes, float]:
    t0 = time.monotonic()
    code, reply = pf.send(raw, listener=listener, mail_from=mail_from)
    return code, reply, time.monotonic() - t0


@pytest.mark.integration
def test_dns_black_hole_mail_flows_within_budget(rig: Rig) -> None:
    """auth.verify with a DNS server that never answers: answered within the budget, AUTH_TEMPERROR."""
    pf, hole = rig.pf, rig.hole
    asked_before = rig.black_hole.received
    brand = [(f"<hole-{i}@amazon.co.jp>", amazon_otp(f"<hole-{i}@amazon.co.jp>")) for i in range(3)]
    results: list[tuple[str, tuple[int, bytes, float]]] = []

    def send(mid: str, raw: bytes) -> None:
        results.append((mid, timed_send(pf, raw, "hole", "bounce@amazon.co.jp")))

    threads = [threading.Thread(target=send, args=item) for item in brand]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # Mail that claims no brand needs no DNS work at all (auth.scope = "brand").
    plain = (b"From: Tanaka <tanaka@example.co.jp>\r\nTo: user@test.example\r\nSubject: lunch\r\n"
             b"Message-ID: <hole-plain@example.co.jp>\r\n\r\nSee you at noon.\r\n")
    code, reply, plain_seconds = timed_send(pf, plain, "hole", "tanaka@example.co.jp")
    assert code == 250, reply
    assert len(results) == len(brand)
    for mid, (code, reply, seconds) in results:
        assert code == 250, (mid, code, reply)
        # Answered long before Postfix's milter timeouts or the 10 s analysis budget (the tight
        # bound is on the milter's own time below).
        assert seconds < HOLE_BUDGET + 3.0, (mid, seconds)
    assert plain_seconds < 2.0, plain_seconds  # no DNS work at all for mail that claims no brand
    assert rig.black_hole.received > asked_before, "the milter never asked the black hole"
    wanted = {mid for mid, _ in brand} | {"<hole-plain@example.co.jp>"}
    wait_until(lambda: wanted <= set(maildir_message_ids(pf)), 30, "delivery", pf)
    by_mid = {}
    for m in pf.delivered():
        hit = MESSAGE_ID.search(m.raw)
        if hit:
            by_mid[hit.group(1).decode()] = m.raw
    for mid, _ in brand:
        raw = by_mid[mid]
        assert len(verdict_headers(raw)) == 1 and not verdict_headers(raw)[0].startswith("error"), mid
        assert "AUTH_TEMPERROR" in header(raw, "X-OTPGuard-Symbols")[0], mid
    assert "AUTH_TEMPERROR" not in header(by_mid["<hole-plain@example.co.jp>"], "X-OTPGuard-Symbols")[0]
    lines = {e["queue_id"]: e for e in hole.events("message")}
    assert all("error" not in e for e in lines.values()), [e for e in lines.values() if "error" in e]
    brand_ms = sorted(e["ms"] for e in lines.values() if "AUTH_TEMPERROR" in e["symbols"])
    print(f"\nDNS black hole: brand mail answered in {sorted(round(r[2], 2) for _, r in results)} s "
          f"(milter: {brand_ms} ms), other mail in {plain_seconds:.2f} s; "
          f"{rig.black_hole.received - asked_before} queries unanswered")
    assert len(brand_ms) == len(brand)
    # The milter's own time per message: the 1 s DNS budget and a little. Without the budget,
    # SPF and DMARC alone would wait 2 s each (query_timeout).
    assert all(ms < (HOLE_BUDGET + 1.0) * 1000 for ms in brand_ms), brand_ms


# --- d. config reloads under load ------------------------------------------------------------

RELOAD_MESSAGES = 500
RELOAD_SESSIONS = 6


@pytest.mark.integration
def test_config_reloads_under_load_fail_no_message(rig: Rig) -> None:
    """SIGHUP again and again, alternating two valid configs, while 500 messages go over 6 sessions."""
    pf, server, path = rig.pf, rig.main, rig.config_main
    original = path.read_text()
    texts = [original, write_test_config(rig.work / "main-b.toml", socket_spec=server.socket,
                                         changes=MAIN_B).read_text()]
    assert texts[0] != texts[1]
    messages = [ordinary_message("reload", i) for i in range(RELOAD_MESSAGES)]
    reloads_before = len(server.events("reload"))
    failed_before = len(server.events("reload_failed"))
    pools_before = len(server.events("workers"))
    load = SmtpLoad(pf.listeners["main"], messages, sessions=RELOAD_SESSIONS,
                    deadline=time.monotonic() + 90).start()
    hups = 0
    try:
        while load.running():
            atomic_write(path, texts[(hups + 1) % 2])
            n = len(server.events("reload"))
            server.signal(signal.SIGHUP)
            hups += 1
            wait_until(lambda: len(server.events("reload")) > n, 10, "the reload to finish")
            time.sleep(0.05)
    finally:
        result = load.join()
        atomic_write(path, original)
        n = len(server.events("reload"))
        server.signal(signal.SIGHUP)
        wait_until(lambda: len(server.events("reload")) > n, 10, "the reload back")
    print(f"\nreloads under load: {hups} reloads while {RELOAD_MESSAGES} messages went over "
          f"{RELOAD_SESSIONS} sessions in {result.elapsed:.1f}s; replies {dict(load.replies)}")
    assert hups >= 5, f"only {hups} reloads happened during the load"
    assert not result.failures, result.failures[:10]
    assert result.tempfails == 0 and result.disconnects == 0 and result.ambiguous == 0, result
    assert set(load.replies) == {250}
    assert len(server.events("reload")) - reloads_before == hups + 1
    assert len(server.events("reload_failed")) == failed_before
    # Each reload started a pool of two workers with its config; the retired ones ended.
    assert len(server.events("workers")) - pools_before == hups + 1
    assert all(e["count"] == 2 for e in server.events("workers"))
    wait_until(lambda: len(current_workers(server)) == 2 and all(
        os.path.exists(f"/proc/{p}") for p in current_workers(server)), 10, "the last pool's workers")
    wait_until(lambda: maildir_count(pf) >= RELOAD_MESSAGES, 60, "delivery of every message", pf)
    delivered = maildir_message_ids(pf)
    assert set(delivered) == {mid for mid, _ in messages} and set(delivered.values()) == {1}
    prefixed = 0
    for m in pf.delivered():
        assert len(verdict_headers(m.raw)) == 1
        prefixed += header(m.raw, "Subject")[0].startswith(RELOADED_PREFIX)
    print(f"{prefixed} of {RELOAD_MESSAGES} delivered under the second config")
    # Both configurations really were in force during the run.
    assert 0 < prefixed < RELOAD_MESSAGES, prefixed


# --- e. hostile headers ------------------------------------------------------------------------

KATAKANA = "\u30a2\u30ab\u30a6\u30f3\u30c8".encode()  # raw UTF-8, no encoded-word
PREFIXES = {"suspicious": "[SUSPICIOUS]", "phish": "[PHISHING]"}


def injection(n: str, *, invalid_8bit: bool) -> bytes:
    """Encoded CR/LF in Subject and display name, raw 8-bit, forged verdict and own-id A-R."""
    junk = b" \xff\xfe" if invalid_8bit else b""
    return (
        b"X-OTPGuard-Verdict: clean; score=0; genuine=yes\r\n"
        b"Authentication-Results: otpguard; dmarc=pass header.from=amazon.co.jp\r\n"
        b"Authentication-Results: OTPGUARD ; dkim=pass header.d=amazon.co.jp\r\n"
        b"From: =?utf-8?q?Amazon_Security=0D=0AX-Injected=3A_2?= " + KATAKANA + junk +
        b" <security@amaz0n-support.example>\r\n"
        b"To: user@test.example\r\n"
        b"Subject: =?utf-8?q?a=0D=0AX-Injected:_1?= " + KATAKANA + b" Amazon" + junk + b" verify\r\n"
        b"Message-ID: <injection-" + n.encode() + b"@amaz0n-support.example>\r\n"
        b"x-otpguard-symbols: AUTH_GENUINE(0) [trust me]\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        b"\r\n"
        b"Your Amazon account is locked. Verify your password within 24 hours:\r\n"
        b"https://amaz0n-support.example/signin?\r\n" + KATAKANA + b"\r\n"
    )


def header_lines_are_well_formed(raw: bytes) -> list[bytes]:
    """Lines of the header section that are neither a field nor a continuation (should be none)."""
    head = raw.split(b"\n\n", 1)[0]
    bad = []
    for line in head.split(b"\n"):
        if b"\r" in line:
            bad.append(line)
        elif line[:1] in (b" ", b"\t"):
            continue
        elif not re.match(rb"^[!-9;-~]+:", line):
            bad.append(line)
    return bad


@pytest.mark.integration
@pytest.mark.parametrize("listener", ["main", "auth"])
@pytest.mark.parametrize("invalid_8bit", [False, True], ids=["utf8", "invalid-8bit"])
def test_header_injection_and_forged_headers(rig: Rig, listener: str, invalid_8bit: bool) -> None:
    """Encoded CR/LF and raw 8-bit in Subject and display name never make a header; forgeries go."""
    pf = rig.pf
    mid = f"{listener}-{int(invalid_8bit)}"
    code, reply = pf.send(injection(mid, invalid_8bit=invalid_8bit), listener=listener,
                          mail_from="bounce@amaz0n-support.example")
    assert code == 250, reply
    got = pf.wait_delivered(f"<injection-{mid}@amaz0n-support.example>".encode()).raw
    names = [n.lower() for n, _ in fields(got)]
    assert "x-injected" not in names, names
    assert not re.search(rb"(?im)^X-Injected", got)
    assert header_lines_are_well_formed(got) == []
    # Exactly one verdict and one symbol list, both ours; the forged ones are gone.
    verdict = verdict_headers(got)
    assert len(verdict) == 1 and re.fullmatch(r"(clean|suspicious|phish); score=[0-9.]+", verdict[0]), verdict
    symbols = header(got, "X-OTPGuard-Symbols")
    assert len(symbols) == 1 and "trust me" not in symbols[0]
    assert "IMPERSONATION" in symbols[0]  # the display name and subject were really analysed
    # Our headers are ASCII whatever the message carried.
    for n, v in fields(got):
        if n.lower().startswith("x-otpguard-"):
            assert v.isascii() and "\r" not in v, (n, v)
    ours = [v for v in header(got, "Authentication-Results") if v.split(";")[0].strip().lower() == "otpguard"]
    if listener == "auth":
        # We checked authentication ourselves: exactly our own A-R, with nothing forged in it.
        assert len(ours) == 1, ours
        assert "dmarc=pass" not in ours[0] and "dkim=pass" not in ours[0], ours
    else:
        assert ours == [], ours
    # The subject got the verdict's prefix and is still one header field.
    subject = header(got, "Subject")
    assert len(subject) == 1
    level = verdict[0].split(";")[0]
    if level in PREFIXES:
        text = subject[0].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        assert str(make_header(decode_header(text))).startswith(PREFIXES[level] + " "), subject


@pytest.mark.integration
def test_socket_is_not_world_writable(rig: Rig) -> None:
    """The shipped mode (0660, group postfix) for every milter socket of the rig."""
    for server in (rig.main, rig.auth, rig.hole):
        st = Path(server.socket[5:]).stat()
        assert stat.S_ISSOCK(st.st_mode)
        assert st.st_mode & 0o007 == 0, oct(st.st_mode)
        assert st.st_mode & 0o777 == 0o660, oct(st.st_mode)


@pytest.mark.integration
def test_socket_mode_is_what_the_config_says() -> None:
    """World access to the socket only when milter.socket_mode asks for it."""
    require_postfix()  # root and a postfix group: the shipped socket_group is "postfix"
    work = shared_tmpdir("otpguard-sockmode-")
    try:
        sock = f"unix:{work}/open.sock"
        cfg = write_test_config(work / "open.toml", socket_spec=sock,
                                changes={**JSON_LOGS, 'socket_mode = "0660"': 'socket_mode = "0666"'})
        server = OtpguardServer(config=cfg, socket=sock, log=work / "open.log").start()
        try:
            assert Path(sock[5:]).stat().st_mode & 0o777 == 0o666
        finally:
            assert server.stop() == 0
        assert not Path(sock[5:]).exists()
    finally:
        shutil.rmtree(work, ignore_errors=True)
