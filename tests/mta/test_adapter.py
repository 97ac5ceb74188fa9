"""The adapter in-process with pymilter's Milter.testctx.TestCtx and a stand-in engine."""
from __future__ import annotations

import dataclasses
import logging
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import Milter
import pytest
from Milter.testctx import TestCtx as MilterTestCtx

from otpguard.mta import adapter, runtime, sockets
from otpguard.mta.deadline import AnalysisTimeout, run_with_deadline
from otpguard.config import Config, load_config
from otpguard.mta.headers import SYMBOLS, VERDICT
from otpguard.core.model import Decision, Envelope, Level, ScoredHit

ROOT = Path(__file__).resolve().parents[2]
BASE = load_config(ROOT / "conf" / "otpguard.toml")

PHISH = Decision(level=Level.PHISH, score=12.5,
                 hits=(ScoredHit(symbol="LOOKALIKE_FROM_DOMAIN", score=12.5, reason="amaz0n.co.jp ~ amazon.co.jp"),))
SUSPICIOUS = Decision(level=Level.SUSPICIOUS, score=6.0, hits=(ScoredHit(symbol="OTP_LURE", score=6.0, reason="code"),))
CLEAN = Decision(level=Level.CLEAN, score=0.0)


class FakeEngine:
    """Records what it is given; answers a fixed decision, raises, or sleeps."""

    def __init__(self, decision: Decision = CLEAN, *, error: Exception | None = None, sleep: float = 0.0,
                 auth_results: str | None = None) -> None:
        self.decision, self.error, self.sleep, self.auth_results = decision, error, sleep, auth_results
        self.calls: list[tuple[bytes, Envelope]] = []

    def analyse(self, raw: bytes, envelope: Envelope, *, truncated: bool = False) -> Decision:
        self.calls.append((raw, envelope))
        self.truncated = truncated
        if self.sleep:
            time.sleep(self.sleep)
        if self.error is not None:
            raise self.error
        return self.decision

    def too_large(self, size: int, raw: bytes = b"", envelope=None) -> Decision:
        self.too_large_size = size
        return Decision(level=Level.CLEAN, score=0.0, analysed=False)

    def own_results_header(self, decision: Decision) -> str | None:
        return self.auth_results


class Recorder:
    """Stand-in for otpguard.ops.metrics.Metrics."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, list[str]]] = []
        self.errors: list[str] = []
        self.failed: list[str] = []
        self.bursts: list[bool] = []

    def burst_detected(self, *, new: bool = True) -> None:
        self.bursts.append(new)

    def record_message(self, decision: Decision, action: str, seconds: float, *, applied=None) -> None:
        self.messages.append((decision.level.value, action, list(applied or ())))

    def record_error(self, stage: str) -> None:
        self.errors.append(stage)

    def record_failed_message(self, action: str) -> None:
        self.failed.append(action)

    in_flight = 0

    def analysis_started(self) -> None:
        self.in_flight += 1

    def analysis_ended(self) -> None:
        self.in_flight -= 1


class Ctx(MilterTestCtx):
    """TestCtx that records every modification with its header index, like the MTA sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple] = []
        self.body_out = b""

    def addheader(self, field: str, value: str, idx: int) -> None:
        self.ops.append(("add", field, value, idx))

    def chgheader(self, field: str, idx: int, value: str | None) -> None:
        self.ops.append(("chg", field, idx, value))

    def quarantine(self, reason: str) -> None:
        self.ops.append(("quarantine", reason))

    def replacebody(self, chunk: bytes) -> None:
        self.body_out += chunk

    # -- drive one connection, message by message --------------------------------------
    def open(self, ip: str = "192.0.2.10", host: str = "mail.sender.example", helo: str = "helo.sender.example") -> int:
        """Negotiate, connect, HELO (TestCtx._connect/_helo treat NOREPLY as failure and close)."""
        self._setsymval("i", "QID1234")
        assert self._negotiate() == Milter.CONTINUE
        self._stage = Milter.M_CONNECT
        rc = Milter.connect_callback(self, host, socket.AF_INET, ip)
        self._stage = None
        assert rc == Milter.NOREPLY
        self._stage = Milter.M_HELO
        rc = self._priv.hello(helo)
        self._stage = None
        return rc

    def message(self, raw: bytes, mail_from: str = "bounce@sender.example",
                rcpts: tuple[str, ...] = ("user@test.example",), chunk: int = 7) -> int:
        """Feed raw the way Postfix does: header fields (folds kept, LF), then body chunks."""
        self.ops, self.body_out, self._reply = [], b"", None
        head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
        assert self._envfrom(f"<{mail_from}>") == Milter.NOREPLY
        for r in rcpts:
            assert self._envrcpt(f"<{r}>") == Milter.NOREPLY
        assert self._data() == Milter.CONTINUE
        fields: list[list[bytes]] = []
        for line in head.split(b"\n"):
            if line[:1] in (b" ", b"\t") and fields:
                fields[-1][1] += b"\n" + line
            else:
                name, _, value = line.partition(b":")
                fields.append([name, value.lstrip(b" ")])
        for name, value in fields:
            assert self._priv.header_bytes(name.decode(), value) == Milter.NOREPLY
        body = body.replace(b"\n", b"\r\n")
        for i in range(0, len(body), chunk):
            assert self._priv.body(body[i:i + chunk]) == Milter.NOREPLY
        self._body = None
        return self._eom()

    def result_headers(self, raw: bytes) -> list[tuple[str, str]]:
        """The header list after applying recorded ops with sendmail/Postfix index semantics."""
        head = raw.replace(b"\r\n", b"\n").partition(b"\n\n")[0].decode("utf-8", "surrogateescape")
        fields: list[list[Any]] = []
        for line in head.split("\n"):
            if line[:1] in (" ", "\t"):
                fields[-1][1] += "\n" + line
            else:
                n, _, v = line.partition(":")
                fields.append([n, v.lstrip(" ")])
        for op in self.ops:
            if op[0] == "chg":
                _, name, idx, value = op
                same = [f for f in fields if f[0].lower() == name.lower()]
                target = same[idx - 1]
                if value is None:
                    fields.remove(target)
                else:
                    target[1] = value
            elif op[0] == "add":
                _, name, value, idx = op
                if idx < 0:
                    fields.append([name, value])
                else:
                    fields.insert(idx, [name, value])
        return [(n, v) for n, v in fields]


def config(**milter_or_actions: Any) -> Config:
    m = {k: v for k, v in milter_or_actions.items() if k in {f.name for f in dataclasses.fields(BASE.milter)}}
    a = {k: v for k, v in milter_or_actions.items() if k in {f.name for f in dataclasses.fields(BASE.actions)}}
    an = {k: v for k, v in milter_or_actions.items() if k in {f.name for f in dataclasses.fields(BASE.analysis)}}
    return dataclasses.replace(BASE, milter=dataclasses.replace(BASE.milter, **m),
                               actions=dataclasses.replace(BASE.actions, **a),
                               analysis=dataclasses.replace(BASE.analysis, **an))


@pytest.fixture
def use():
    """Install a runtime (engine + config) for the test; returns a fresh Ctx each call."""
    Milter.factory = adapter.OtpGuardMilter
    runtime.reset_in_flight()

    def install(engine: FakeEngine, cfg: Config = BASE, metrics: Any = None, bursts: Any = None) -> Ctx:
        runtime.set_runtime(runtime.Runtime(config=cfg, engine=engine, metrics=metrics, bursts=bursts))
        ctx = Ctx()
        assert ctx.open() == Milter.NOREPLY  # connect and helo are no-reply steps
        return ctx

    yield install
    runtime.set_runtime(None)


SIMPLE = (b"From: Amazon <account@amaz0n.co.jp>\r\nTo: user@test.example\r\n"
          b"Subject: Verify your account\r\n\r\nHello\r\nline 2\r\n")


# --- collection ------------------------------------------------------------------------------

def test_envelope_and_raw_bytes_reach_the_engine(use) -> None:
    engine = FakeEngine()
    ctx = use(engine)
    raw = (b"From: a@b.example\r\nSubject: folded\r\n\tcontinued \xe9\xff\r\nX-Empty: \r\n\r\n"
           b"body \xe9\r\n.dot\r\n")
    assert ctx.message(raw, rcpts=("one@test.example", "two@test.example")) == Milter.CONTINUE
    got_raw, env = engine.calls[0]
    assert got_raw == raw
    assert env == Envelope(client_ip="192.0.2.10", client_name="mail.sender.example", helo="helo.sender.example",
                           mail_from="bounce@sender.example", rcpt_to=("one@test.example", "two@test.example"),
                           queue_id="QID1234")


def test_state_is_reset_for_every_message_of_a_connection(use) -> None:
    engine = FakeEngine()
    ctx = use(engine)
    ctx.message(b"Subject: one\r\n\r\nfirst\r\n", mail_from="a@one.example", rcpts=("x@test.example",))
    ctx.message(b"Subject: two\r\n\r\nsecond\r\n", mail_from="b@two.example", rcpts=("y@test.example",))
    (raw1, env1), (raw2, env2) = engine.calls
    assert raw2 == b"Subject: two\r\n\r\nsecond\r\n"
    assert env2.mail_from == "b@two.example" and env2.rcpt_to == ("y@test.example",)
    assert env1.rcpt_to == ("x@test.example",)
    assert runtime.in_flight() == 0


def test_aborted_message_leaves_nothing_behind(use) -> None:
    engine = FakeEngine()
    ctx = use(engine)
    ctx._envfrom("<a@one.example>")
    ctx._envrcpt("<x@test.example>")
    ctx._priv.header_bytes("Subject", b"half")
    assert runtime.in_flight() == 1
    ctx._priv.abort()
    assert runtime.in_flight() == 0
    ctx.message(b"Subject: next\r\n\r\nok\r\n", mail_from="b@two.example", rcpts=("y@test.example",))
    assert engine.calls[0][0] == b"Subject: next\r\n\r\nok\r\n"
    assert engine.calls[0][1].rcpt_to == ("y@test.example",)


def test_large_body_is_spooled_to_disk_and_kept_whole(use) -> None:
    engine = FakeEngine()
    ctx = use(engine, config(spool_bytes=1024))
    body = b"".join(b"line %05d of a long body\r\n" % i for i in range(2000))
    seen: list[bool] = []
    real_body = adapter.OtpGuardMilter.body

    def spy(self, chunk):  # observe the spool rolling over to a real file
        rc = real_body(self, chunk)
        seen.append(self._msg.body.on_disk)
        return rc

    ctx._priv.body = spy.__get__(ctx._priv)
    ctx.message(b"Subject: big\r\n\r\n" + body, chunk=512)
    assert seen[-1] is True and seen[0] is False
    assert engine.calls[0][0] == b"Subject: big\r\n\r\n" + body


def test_only_the_analysed_prefix_of_a_big_body_is_kept(use) -> None:
    engine = FakeEngine()
    ctx = use(engine, config(max_parse_bytes=4096, max_message_bytes=1 << 20))
    body = b"x" * 100_000
    ctx.message(b"Subject: big\r\n\r\n" + body, chunk=8192)
    raw = engine.calls[0][0]
    assert raw == b"Subject: big\r\n\r\n" + body[:4096]
    assert engine.truncated is True


def test_a_message_over_the_size_cap_is_not_kept_nor_analysed(use) -> None:
    engine = FakeEngine(PHISH)
    ctx = use(engine, config(max_parse_bytes=2048, max_message_bytes=10_000))
    ctx.message(b"Subject: huge\r\n\r\n" + b"y" * 50_000, chunk=8192)
    assert engine.calls == [] and engine.too_large_size > 50_000
    assert ctx._reply is None or ctx._reply[0] != "550"


# --- negotiation -----------------------------------------------------------------------------

def test_negotiates_only_what_it_uses(use) -> None:
    ctx = use(FakeEngine())
    m = ctx._priv
    assert m._actions == adapter.NEEDED_ACTIONS & Milter.CURR_ACTS
    assert not m._actions & (Milter.ADDRCPT | Milter.DELRCPT | Milter.CHGFROM)
    p = m._protocol
    for skipped in (Milter.P_NOEOH, Milter.P_NOUNKNOWN):
        assert p & skipped
    for wanted in (Milter.P_NOCONNECT, Milter.P_NOHELO, Milter.P_NOMAIL, Milter.P_NORCPT, Milter.P_NODATA,
                   Milter.P_NOHDRS, Milter.P_NOBODY):
        assert not p & wanted
    for no_reply in (Milter.P_NR_CONN, Milter.P_NR_HELO, Milter.P_NR_MAIL, Milter.P_NR_RCPT, Milter.P_NR_HDR,
                     Milter.P_NR_BODY):
        assert p & no_reply
    assert not p & Milter.P_NR_DATA  # data() is answered on purpose (delayed-ACK stalls)
    # No macro lists: Postfix's defaults carry the queue id ({i}) at end of message.
    assert not m._actions & Milter.SETSYMLIST
    assert ctx._symlist == [None] * 7


# --- actions -----------------------------------------------------------------------------------

def test_phish_is_tagged_and_quarantined(use) -> None:
    ctx = use(FakeEngine(PHISH))
    assert ctx.message(SIMPLE) == Milter.CONTINUE
    assert ("quarantine", "otpguard: phish score=12.5") in ctx.ops
    hdrs = ctx.result_headers(SIMPLE)
    assert (VERDICT, "phish; score=12.5") in hdrs
    assert (SYMBOLS, "LOOKALIKE_FROM_DOMAIN(12.5) [amaz0n.co.jp ~ amazon.co.jp]") in hdrs
    assert ("Subject", "Verify your account") in hdrs


def test_suspicious_gets_the_subject_prefix(use) -> None:
    ctx = use(FakeEngine(SUSPICIOUS))
    ctx.message(SIMPLE)
    assert ("chg", "Subject", 1, "[SUSPICIOUS] Verify your account") in ctx.ops
    assert not any(op[0] == "quarantine" for op in ctx.ops)


def test_forged_headers_are_removed_last_index_first(use) -> None:
    raw = (b"X-OTPGuard-Verdict: clean; score=0\r\nFrom: a@b.example\r\nx-otpguard-verdict: clean\r\n"
           b"Authentication-Results: otpguard; dmarc=pass header.from=amazon.co.jp\r\n"
           b"Authentication-Results: mx.example.org; spf=pass\r\n"
           b"Authentication-Results: (comment) OTPGUARD;\r\n\tdkim=pass\r\n"
           b"X-OTPGuard-Symbols: AUTH_GENUINE(0)\r\nSubject: s\r\n\r\nbody\r\n")
    ctx = use(FakeEngine(CLEAN))
    ctx.message(raw)
    chg = [op for op in ctx.ops if op[0] == "chg"]
    assert chg == [("chg", "Authentication-Results", 3, None), ("chg", "Authentication-Results", 1, None),
                   ("chg", "X-OTPGuard-Symbols", 1, None),
                   ("chg", "x-otpguard-verdict", 2, None), ("chg", "X-OTPGuard-Verdict", 1, None)]
    assert ctx.result_headers(raw) == [("From", "a@b.example"),
                                       ("Authentication-Results", "mx.example.org; spf=pass"),
                                       ("Subject", "s")]


def test_own_authentication_results_added_on_top(use) -> None:
    ctx = use(FakeEngine(PHISH, auth_results="otpguard; spf=fail smtp.mailfrom=amaz0n.co.jp"))
    ctx.message(SIMPLE)
    assert ctx.result_headers(SIMPLE)[0] == ("Authentication-Results", "otpguard; spf=fail smtp.mailfrom=amaz0n.co.jp")


def test_reject(use) -> None:
    cfg = config(by_level={**BASE.actions.by_level, "phish": ("reject",)})
    ctx = use(FakeEngine(PHISH), cfg)
    assert ctx.message(SIMPLE) == Milter.REJECT
    assert ctx._reply == ("550", "5.7.1", "Message rejected as brand impersonation (otpguard)")
    assert ctx.ops == []


def test_monitor_mode_touches_nothing_but_forged_headers(use, caplog) -> None:
    ctx = use(FakeEngine(PHISH), config(monitor=True))
    raw = b"X-OTPGuard-Verdict: clean\r\n" + SIMPLE
    with caplog.at_level(logging.INFO, logger="otpguard"):
        assert ctx.message(raw) == Milter.CONTINUE
    # Header hygiene is not an action: a forged verdict never reaches the mailbox.
    assert ctx.ops == [("chg", "X-OTPGuard-Verdict", 1, None)] and ctx.body_out == b""
    lines = [r for r in caplog.records if r.getMessage() == "message"]
    assert len(lines) == 1 and lines[0].fields["action"] == "monitor"
    assert lines[0].fields["verdict"] == "phish"
    # With the switch off, monitor mode touches nothing at all.
    ctx = use(FakeEngine(PHISH), config(monitor=True, header_hygiene=False))
    assert ctx.message(raw) == Milter.CONTINUE and ctx.ops == []


def test_banner_replaces_a_simple_body(use) -> None:
    cfg = config(by_level={**BASE.actions.by_level, "phish": ("tag", "banner")}, banner_text="WARNING: fake")
    ctx = use(FakeEngine(PHISH), cfg)
    ctx.message(SIMPLE)
    assert ctx.body_out == b"WARNING: fake\r\n\r\nHello\r\nline 2\r\n"


def test_banner_skipped_without_text_part(use, caplog) -> None:
    cfg = config(by_level={**BASE.actions.by_level, "phish": ("tag", "banner")}, banner_text="WARNING")
    ctx = use(FakeEngine(PHISH), cfg)
    raw = (b"Content-Type: multipart/mixed; boundary=x\r\n\r\n"
           b"--x\r\nContent-Type: image/png\r\n\r\niVBORw0=\r\n--x--\r\n")
    with caplog.at_level(logging.INFO, logger="otpguard"):
        ctx.message(raw)
    assert ctx.body_out == b""
    (line,) = [r for r in caplog.records if r.name.startswith("otpguard")]
    assert line.getMessage() == "message" and line.fields["notes"] == ["banner skipped: content type image/png"]


def test_one_log_line_per_message_with_the_facts(use, caplog) -> None:
    metrics = Recorder()
    ctx = use(FakeEngine(PHISH), metrics=metrics)
    with caplog.at_level(logging.INFO, logger="otpguard"):
        ctx.message(SIMPLE)
    lines = [r for r in caplog.records if r.getMessage() == "message"]
    assert len(lines) == 1
    f = lines[0].fields
    assert (f["queue_id"], f["verdict"], f["score"], f["symbols"], f["action"]) == \
        ("QID1234", "phish", 12.5, ["LOOKALIKE_FROM_DOMAIN"], "tag+quarantine")
    assert f["ms"] >= 0
    assert metrics.messages == [("phish", "quarantine", ["tag", "quarantine"])]


# --- the guard -------------------------------------------------------------------------------

def test_engine_exception_with_on_error_accept_tags_error(use, caplog) -> None:
    metrics = Recorder()
    ctx = use(FakeEngine(error=ValueError("boom")), config(on_error="accept"), metrics=metrics)
    raw = b"X-OTPGuard-Verdict: clean; score=0\r\n" + SIMPLE
    with caplog.at_level(logging.INFO, logger="otpguard"):
        assert ctx.message(raw) == Milter.CONTINUE
    assert ctx.result_headers(raw)[-1] == (VERDICT, "error")
    assert [h for h in ctx.result_headers(raw) if h[0] == VERDICT] == [(VERDICT, "error")]
    lines = [r for r in caplog.records if r.name.startswith("otpguard")]
    assert len(lines) == 1
    assert lines[0].fields["action"] == "error-accept" and "ValueError: boom" in lines[0].fields["error"]
    assert metrics.errors == ["analysis"]
    assert metrics.failed == ["tag"]  # otpguard_messages_total{verdict="error", action="tag"}
    assert runtime.in_flight() == 0
    assert metrics.in_flight == 0  # the gauge came down although the analysis raised


def test_engine_exception_with_on_error_tempfail(use) -> None:
    ctx = use(FakeEngine(error=RuntimeError("bug")), config(on_error="tempfail"))
    assert ctx.message(SIMPLE) == Milter.TEMPFAIL
    assert ctx._reply == ("451", "4.3.0", "otpguard: temporary failure, please retry")
    assert ctx.ops == []


def test_time_budget_overrun_answers_within_the_budget(use, caplog) -> None:
    metrics = Recorder()
    ctx = use(FakeEngine(PHISH, sleep=2.0), config(on_error="tempfail", time_budget_seconds=0.2), metrics=metrics)
    t0 = time.monotonic()
    with caplog.at_level(logging.INFO, logger="otpguard"):
        assert ctx.message(SIMPLE) == Milter.TEMPFAIL
    assert time.monotonic() - t0 < 1.0
    assert metrics.errors == ["timeout"] and metrics.failed == ["tempfail"]
    assert "AnalysisTimeout" in [r for r in caplog.records if r.getMessage() == "message"][0].fields["error"]


def test_monitor_mode_never_tempfails(use) -> None:
    metrics = Recorder()
    ctx = use(FakeEngine(error=RuntimeError("bug")), config(on_error="tempfail", monitor=True), metrics=metrics)
    assert ctx.message(SIMPLE) == Milter.CONTINUE
    assert ctx.ops == [] and metrics.failed == ["monitor"]
    # A failed message in monitor mode still loses its forged verdict, and gets no verdict of ours.
    assert ctx.message(b"X-OTPGuard-Verdict: clean\r\n" + SIMPLE) == Milter.CONTINUE
    assert ctx.ops == [("chg", "X-OTPGuard-Verdict", 1, None)]


def test_failing_mta_action_is_caught(use) -> None:
    ctx = use(FakeEngine(PHISH), config(on_error="tempfail"))

    def broken(reason: str) -> None:
        raise Milter.error("cannot quarantine message")

    ctx.quarantine = broken  # type: ignore[method-assign]
    assert ctx.message(SIMPLE) == Milter.TEMPFAIL


def test_burst_tracker_is_consulted(use) -> None:
    from otpguard.ops.bursts import BurstNotice

    class Tracker:
        def observe(self, decision: Decision, envelope: Envelope) -> BurstNotice:
            return BurstNotice(recipient_count=3, notice="Codes requested", subject_prefix="[Codes?]",
                               language="en", new_burst=True)

    metrics = Recorder()
    ctx = use(FakeEngine(Decision(level=Level.CLEAN, score=0.0, genuine=True, code_mail=True)),
              metrics=metrics, bursts=Tracker())
    ctx.message(SIMPLE)
    assert ("add", "X-OTPGuard-Burst", "count=3; Codes requested", -1) in ctx.ops
    assert ("chg", "Subject", 1, "[Codes?] Verify your account") in ctx.ops
    assert metrics.messages == [("clean", "tag", ["burst_notice", "subject"])]
    assert metrics.bursts == [True]


# --- sockets ---------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,lib", [("unix:/run/otpguard/otpguard.sock", "unix:/run/otpguard/otpguard.sock"),
                                      ("inet:127.0.0.1:8891", "inet:8891@127.0.0.1"),
                                      ("inet:[::1]:8891", "inet6:8891@::1"),
                                      ("inet:localhost:10025", "inet:10025@localhost")])
def test_socket_spec_in_libmilter_spelling(spec: str, lib: str) -> None:
    assert sockets.libmilter_spec(spec) == lib


@pytest.mark.parametrize("spec", ["unix:relative", "inet:127.0.0.1", "inet:h:99999", "tcp:1.2.3.4:1", ""])
def test_bad_socket_specs(spec: str) -> None:
    with pytest.raises(ValueError):
        sockets.libmilter_spec(spec)


def test_tcp_nodelay_on_the_listener_reaches_accepted_sockets() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        assert sockets.set_listener_nodelay(port) == 1
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        accepted.close()
        client.close()
    finally:
        listener.close()


def test_run_with_deadline() -> None:
    assert run_with_deadline(lambda: 42, 1.0) == 42
    with pytest.raises(KeyError):
        run_with_deadline(lambda: {}["x"], 1.0)
    done = threading.Event()
    with pytest.raises(AnalysisTimeout):
        run_with_deadline(lambda: done.wait(5), 0.05)
    done.set()


# --- log lines ---------------------------------------------------------------------------------

def test_logfmt_and_json_lines_cannot_be_broken() -> None:
    import io
    import json as json_mod

    from otpguard.ops import logs

    hostile = 'a"b\\c\nevent=forged\r\x1b[31m \udcff 日本'
    fields = [("queue_id", "ABC123"), ("verdict", "phish"), ("score", 12.5), ("symbols", ["A", "B"]),
              ("note", hostile), ("empty", "")]
    line = logs.logfmt(fields)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line.startswith("queue_id=ABC123 verdict=phish score=12.5 symbols=A,B note=")
    assert '\\"' in line and "\\n" in line and 'empty=""' in line
    js = logs.json_line(fields)
    assert js.isascii() and "\n" not in js
    assert json_mod.loads(js)["note"].startswith('a"b\\c\nevent=forged')
    root = logging.getLogger()
    level, others = root.level, list(root.handlers)
    for fmt in ("logfmt", "json"):
        stream = io.StringIO()
        try:
            # Alone on the root logger, the message line takes the direct path; with another
            # handler listening (pytest's capture), the logging path. Both write the same line.
            for h in others:
                root.removeHandler(h)
            logs.setup("info", fmt, stream=stream)
            logs.message(queue_id="Q1", decision=PHISH, action="tag+quarantine", ms=3.25, notes=[hostile])
            for h in others:
                root.addHandler(h)
            logs.message(queue_id="Q1", decision=PHISH, action="tag+quarantine", ms=3.25, notes=[hostile])
        finally:
            for h in [h for h in root.handlers if getattr(h, "_otpguard", False)]:
                root.removeHandler(h)
            for h in others:
                if h not in root.handlers:
                    root.addHandler(h)
            root.setLevel(level)
        direct, logged = stream.getvalue().splitlines()
        strip_ts = re.compile(r'^(ts=\S+|\{"ts":"[^"]+",)')
        assert strip_ts.sub("", direct) == strip_ts.sub("", logged), (direct, logged)
        out = direct + "\n"
        assert out.count("\n") == 1, out
        assert "Q1" in out and "phish" in out and "tag+quarantine" in out and "LOOKALIKE_FROM_DOMAIN" in out


# --- a reload racing a message (analysis workers) -------------------------------------------------

def test_a_message_whose_runtime_is_replaced_before_its_analysis_starts_over_whole(use, caplog) -> None:
    """With workers, a reload may retire the pool a message took at end of message before the
    message reached it: the message starts over with the new runtime, config and all."""
    from otpguard.mta.runtime import RuntimeReplaced

    new_engine = FakeEngine(SUSPICIOUS)
    metrics = Recorder()

    class RetiredPool:
        count = 2

        def analyse(self, msg, envelope, budget):
            runtime.set_runtime(runtime.Runtime(config=config(monitor=False), engine=new_engine, metrics=metrics))
            raise RuntimeReplaced()

    old_engine = FakeEngine(PHISH)
    ctx = use(old_engine, metrics=metrics)
    old = runtime.get_runtime()
    every_message_to_the_pool = dataclasses.replace(old.config, milter=dataclasses.replace(old.config.milter,
                                                                                          inline_max_bytes=0))
    runtime.set_runtime(dataclasses.replace(old, pool=RetiredPool(), config=every_message_to_the_pool))
    with caplog.at_level(logging.INFO, logger="otpguard"):
        assert ctx.message(SIMPLE) == Milter.CONTINUE
    assert old_engine.calls == [] and len(new_engine.calls) == 1
    assert ("chg", "Subject", 1, "[SUSPICIOUS] Verify your account") in ctx.ops
    assert [r.fields["verdict"] for r in caplog.records if r.getMessage() == "message"] == ["suspicious"]
    assert metrics.messages == [("suspicious", "tag", ["tag", "subject"])] and metrics.errors == []
    assert runtime.in_flight() == 0 and metrics.in_flight == 0
