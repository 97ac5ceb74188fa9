"""End to end: a private Postfix on loopback with `otpguard serve` on a unix socket and on inet.

Milter A (unix socket) runs the shipped actions plus tag+subject for clean mail; milter B
(inet, TCP_NODELAY) only tags below phish. Postfix has one listener per milter and one
without milter ("plain") as the baseline for "unchanged". Corpus mail is sent over loopback
only and is delivered to a local Maildir or held; nothing is relayed.
"""
from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import email
import email.policy
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from email.header import Header, decode_header, make_header
from pathlib import Path
from typing import Iterator

import pytest

from support.postfix import (OTPGUARD, OtpguardServer, PostfixInstance,
                             delivered_by_queue_id, fields, free_port, header,
                             postfix_instance_factory, shared_tmpdir, strip_mbox_from,
                             write_test_config)

from conftest import CORPUS, need_corpus  # noqa: E402  (one setting: OTPGUARD_CORPUS)
PHISH = sorted((CORPUS / "phish").glob("*.eml"))
LEGIT = sorted((CORPUS / "legit").glob("*.eml"))
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "milter"
PREFIX = {"clean": "[要注意]", "suspicious": "[SUSPICIOUS]", "phish": "[PHISHING]"}

JSON_LOGS = {'format = "logfmt"': 'format = "json"'}
CONFIG_A = {**JSON_LOGS,
            'clean = []': 'clean = ["tag", "subject"]',
            'genuine = []': 'genuine = ["tag"]',
            'on_error = "accept"': 'on_error = "tempfail"',
            '[actions.subject_prefix]': f'[actions.subject_prefix]\nclean = "{PREFIX["clean"]}"'}
CONFIG_B = {**JSON_LOGS,
            'clean = []': 'clean = ["tag"]',
            'genuine = []': 'genuine = ["tag"]',
            'suspicious = ["tag", "subject"]': 'suspicious = ["tag"]'}


@dataclass
class Stack:
    """Everything the tests share."""

    work: Path
    pf: PostfixInstance
    a: OtpguardServer  # unix socket
    b: OtpguardServer  # inet
    config_b: Path


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """Postfix + two otpguard milters, started once for the module."""
    need_corpus()
    assert PHISH and LEGIT, f"no phish or legit mail in {CORPUS}"
    work = shared_tmpdir("otpguard-e2e-")
    (work / "sock").mkdir(mode=0o755)
    sock_a = f"unix:{work}/sock/otpguard.sock"
    sock_b = f"inet:127.0.0.1:{free_port()}"
    # A's config names a different socket on purpose: --socket must override it.
    cfg_a = write_test_config(work / "a.toml", socket_spec="unix:/nonexistent/ignored.sock", changes=CONFIG_A)
    cfg_b = write_test_config(work / "b.toml", socket_spec=sock_b, changes=CONFIG_B)
    a = OtpguardServer(config=cfg_a, socket=sock_a, log=work / "a.log")
    b = OtpguardServer(config=cfg_b, socket=sock_b, log=work / "b.log")
    postfix = postfix_instance_factory({"unix": sock_a, "inet": sock_b, "plain": ""}, root=work / "postfix")
    try:
        pf = next(postfix)
        a.start()
        b.start()
        yield Stack(work=work, pf=pf, a=a, b=b, config_b=cfg_b)
    finally:
        for server in (a, b):
            server.stop()
        postfix.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(autouse=True)
def clean_state(request) -> None:
    """Empty queue and mailbox before each Postfix test."""
    if "stack" in request.fixturenames:
        st = request.getfixturevalue("stack")
        st.pf.delete_all()
        st.pf.clear_mailbox()


# --- helpers ---------------------------------------------------------------------------

def queue_id_of(reply: bytes) -> str:
    m = re.search(rb"queued as ([0-9A-Za-z]+)", reply)
    assert m, reply
    return m.group(1).decode()


def recorded_sender(raw: bytes) -> str:
    """The envelope sender the message itself records (its Return-Path), or the null sender."""
    values = header(strip_mbox_from(raw), "Return-Path")
    return values[0].strip().strip("<>").strip() if values else ""


def send_many(pf: PostfixInstance, files: list[Path], listener: str, *, realistic: bool = False) -> dict[str, Path]:
    """Send files in parallel; {queue id: file}. realistic: MAIL FROM is the message's own
    Return-Path (the production path), instead of the same test sender for every message."""
    def one(path: Path) -> tuple[str, Path]:
        raw = path.read_bytes()
        extra = {"mail_from": recorded_sender(raw)} if realistic else {}
        code, reply = pf.send(raw, listener=listener, **extra)
        assert code == 250, f"{path.name}: {code} {reply!r}"
        return queue_id_of(reply), path

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return dict(pool.map(one, files))




def wait_settled(pf: PostfixInstance, qids: set[str], timeout: float = 60) -> tuple[dict[str, bytes], set[str]]:
    """Wait until every queue id is delivered or held; returns (delivered, held)."""
    result: list = []

    def check() -> bool:
        held = {q["queue_id"] for q in pf.held()}
        delivered = delivered_by_queue_id(pf)
        result[:] = [delivered, held]
        return qids <= set(delivered) | held

    pf.wait_for(check, timeout, f"{len(qids)} messages to be delivered or held")
    return result[0], result[1]


def verdicts(server: OtpguardServer) -> dict[str, dict]:
    """queue id -> the milter's log line for it."""
    return {e["queue_id"]: e for e in server.events("message")}




def body_of(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]




TRACE = {"return-path", "x-original-to", "delivered-to"}


def comparable(raw: bytes, original: bytes) -> list[tuple[str, str]]:
    """Header fields minus what Postfix adds on the way (trace, and Message-Id/Date if missing)."""
    orig_names = {n.lower() for n, _ in fields(strip_mbox_from(original))}
    out, first_received = [], True
    for n, v in fields(raw):
        key = n.lower()
        if key in TRACE:
            continue
        if key == "received" and first_received:
            first_received = False  # Postfix's own
            continue
        if key in ("message-id", "date") and key not in orig_names:
            continue
        out.append((n, v))
    return out


def ours(pairs: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Split header fields into (ours, the rest)."""
    mine = [p for p in pairs if p[0].lower().startswith("x-otpguard-")]
    return mine, [p for p in pairs if not p[0].lower().startswith("x-otpguard-")]


def displayed_subject(raw: bytes) -> str:
    value = header(raw, "Subject")[0]
    return str(make_header(decode_header(value)))


# --- tests -------------------------------------------------------------------------------

def test_config_error_exits_2_naming_key_and_file(tmp_path: Path) -> None:
    bad = write_test_config(tmp_path / "bad.toml", socket_spec="unix:/tmp/x.sock",
                            changes={'on_error = "accept"': 'on_error = "sometimes"'})
    res = subprocess.run([OTPGUARD, "serve", "--config", str(bad)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert str(bad) in res.stderr and "milter.on_error" in res.stderr and "accept, tempfail" in res.stderr
    res = subprocess.run([OTPGUARD, "serve", "--config", str(bad).replace("bad", "missing")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "cannot read" in res.stderr
    good = write_test_config(tmp_path / "good.toml", socket_spec="unix:/tmp/x.sock")
    res = subprocess.run([OTPGUARD, "serve", "--config", str(good), "--socket", "tcp:1.2.3.4"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--socket" in res.stderr


@pytest.mark.integration
def test_unix_socket_is_connectable_by_postfix_only(stack: Stack) -> None:
    path = Path(stack.a.socket[5:])
    st = path.stat()
    assert oct(st.st_mode & 0o777) == "0o660"
    import grp
    assert grp.getgrgid(st.st_gid).gr_name == "postfix"


def expected_levels(engine, files: list[Path]) -> dict[Path, str]:
    """The level the engine gives each file with the envelope these tests send it with."""
    from otpguard.core.model import Envelope

    return {p: engine.analyse(p.read_bytes(), Envelope(mail_from=recorded_sender(p.read_bytes()) or None,
                                                      client_ip="127.0.0.1", helo="client.sender.example",
                                                      rcpt_to=("user@test.example",))).level.value
            for p in files}


@pytest.mark.integration
def test_phish_corpus_is_held_with_our_headers(stack: Stack, engine) -> None:
    """Every phish sample ends where its verdict says, per message: the verdict Postfix's milter
    logs is the one the engine gives it, at least suspicious; phish held with our headers, a
    suspicious one delivered with them."""
    pf = stack.pf
    sent = send_many(pf, PHISH, "unix", realistic=True)
    delivered, held = wait_settled(pf, set(sent))
    logged = verdicts(stack.a)
    expected = expected_levels(engine, PHISH)
    for qid, path in sent.items():
        line = logged.get(qid)
        assert line is not None, f"{path.name}: no log line for {qid}"
        level = line["verdict"]
        assert level == expected[path], (path.name, level, expected[path], line.get("symbols"))
        assert level in ("suspicious", "phish"), (path.name, line)
        if level == "phish":
            assert qid in held, f"{path.name}: verdict phish but not held"
            hdrs = pf.postcat(qid)
            assert re.search(rb"\nX-OTPGuard-Verdict: phish; score=[0-9.]+\n", hdrs), path.name
            assert b"\nX-OTPGuard-Symbols: " in hdrs
            assert line["action"] == "tag+quarantine"
        else:
            assert qid in delivered, f"{path.name}: verdict {level} but not delivered"
            v = header(delivered[qid], "X-OTPGuard-Verdict")
            assert len(v) == 1 and v[0].startswith(level + "; score="), path.name
            assert displayed_subject(delivered[qid]).startswith(PREFIX[level]), path.name


@pytest.mark.integration
def test_phish_over_inet_is_held_too(stack: Stack) -> None:
    pf = stack.pf
    sent = send_many(pf, PHISH[:5], "inet")
    delivered, held = wait_settled(pf, set(sent))
    logged = verdicts(stack.b)
    for qid, path in sent.items():
        assert (logged[qid]["verdict"] == "phish") == (qid in held), path.name
    assert held


@pytest.mark.integration
def test_legit_mail_is_delivered_unchanged_but_for_the_verdict(stack: Stack) -> None:
    """Through milter B (inet): same headers and body as through the no-milter listener, plus ours."""
    pf = stack.pf
    via_milter = send_many(pf, LEGIT, "inet", realistic=True)
    via_plain = send_many(pf, LEGIT, "plain", realistic=True)
    delivered, held = wait_settled(pf, set(via_milter) | set(via_plain))
    assert not held, f"legit mail held: {[via_milter.get(q) for q in held]}"
    plain_by_file = {path: delivered[qid] for qid, path in via_plain.items()}
    logged = verdicts(stack.b)
    for qid, path in via_milter.items():
        original = path.read_bytes()
        filtered, baseline = delivered[qid], plain_by_file[path]
        assert body_of(filtered) == body_of(baseline), path.name
        mine, rest = ours(comparable(filtered, original))
        assert rest == comparable(baseline, original), path.name
        assert [n for n, _ in mine] == ["X-OTPGuard-Verdict", "X-OTPGuard-Symbols"], path.name
        assert logged[qid]["verdict"] == "clean", (path.name, logged[qid])  # verify is off: clean, not genuine
        assert mine[0][1].startswith("clean; score="), path.name


@pytest.mark.integration
@pytest.mark.parametrize("charset", ["iso-2022-jp", "utf-8"])
def test_subject_prefix_keeps_japanese_subject_decodable(stack: Stack, charset: str) -> None:
    pf = stack.pf
    text = "来週の打ち合わせについて（資料添付）"
    subject = Header(text, charset).encode()
    raw = (f"From: Tanaka <tanaka@example.co.jp>\r\nTo: user@test.example\r\nSubject: {subject}\r\n"
           f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset={charset}\r\n"
           f"Content-Transfer-Encoding: 7bit\r\nMessage-ID: <subject-{charset}@example.co.jp>\r\n\r\n").encode()
    raw += "よろしくお願いします。\r\n".encode(charset) + f"marker-subject-{charset}\r\n".encode()
    assert pf.send(raw, listener="unix")[0] == 250
    first = pf.wait_delivered(f"marker-subject-{charset}".encode()).raw
    level = header(first, "X-OTPGuard-Verdict")[0].split(";")[0]
    assert displayed_subject(first) == f"{PREFIX[level]} {text}"
    # A second pass (re-scan, forwarding loop) does not add the prefix twice.
    pf.clear_mailbox()
    assert pf.send(first, listener="unix")[0] == 250
    second = pf.wait_delivered(f"marker-subject-{charset}".encode()).raw
    level2 = header(second, "X-OTPGuard-Verdict")[0].split(";")[0]
    shown = displayed_subject(second)
    assert shown.count(PREFIX[level]) == 1 and shown.endswith(text)
    if level2 == level:
        assert shown == f"{PREFIX[level]} {text}"


@pytest.mark.integration
def test_forged_verdict_headers_are_removed(stack: Stack) -> None:
    pf = stack.pf
    raw = (b"X-OTPGuard-Verdict: clean; score=0; genuine=yes\r\n"
           b"Authentication-Results: otpguard; dmarc=pass header.from=amazon.co.jp\r\n"
           b"Authentication-Results: upstream.example; spf=none\r\n"
           b"From: Someone <someone@example.net>\r\nTo: user@test.example\r\nSubject: hello\r\n"
           b"x-otpguard-symbols: AUTH_GENUINE(0) [trust me]\r\n"
           b"X-OTPGuard-Verdict: clean\r\n\r\nmarker-forged\r\n")
    for listener in ("unix", "inet"):
        pf.clear_mailbox()
        assert pf.send(raw, listener=listener)[0] == 250
        got = pf.wait_delivered(b"marker-forged").raw
        mine, rest = ours(fields(got))
        assert [n for n, _ in mine] == ["X-OTPGuard-Verdict", "X-OTPGuard-Symbols"], listener
        assert "genuine=yes" not in mine[0][1] and "trust me" not in mine[1][1]
        assert header(got, "Authentication-Results") == ["upstream.example; spf=none"], listener


@pytest.mark.integration
def test_quarantine_list_and_release(stack: Stack) -> None:
    pf = stack.pf
    sample = PHISH[0]
    code, reply = pf.send(sample.read_bytes(), listener="unix")
    qid = queue_id_of(reply)
    pf.wait_held()
    assert verdicts(stack.a)[qid]["verdict"] == "phish"
    conf = str(pf.confdir)
    listing = subprocess.run([OTPGUARD, "quarantine", "list", "--postfix-config", conf],
                             capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert qid in listing.stdout and f"  phish {verdicts(stack.a)[qid]['score']:g}" in listing.stdout
    assert "Symbols: " in listing.stdout
    show = subprocess.run([OTPGUARD, "quarantine", "show", qid, "--postfix-config", conf],
                          capture_output=True, text=True, timeout=60)
    assert show.returncode == 0 and "Reasons:" in show.stdout
    rel = subprocess.run([OTPGUARD, "quarantine", "release", qid, "--postfix-config", conf],
                         capture_output=True, text=True, timeout=60)
    assert rel.returncode == 0, rel.stderr
    pf.wait_for(lambda: qid in delivered_by_queue_id(pf), what=f"release of {qid}")
    got = delivered_by_queue_id(pf)[qid]
    assert header(got, "X-OTPGuard-Verdict")[0].startswith("released; was=phish; score=")  # resubmitted
    assert pf.held() == []


@pytest.mark.integration
def test_monitor_mode_by_reload_leaves_mail_untouched(stack: Stack) -> None:
    """SIGHUP switches milter B to monitor mode; a bad file on SIGHUP keeps the running config."""
    pf, b = stack.pf, stack.b
    original = stack.config_b.read_text()
    sample = PHISH[0].read_bytes().replace(b"\nFrom:", b"\nX-OTPGuard-Verdict: forged-but-kept\nFrom:", 1)
    try:
        stack.config_b.write_text(original.replace("monitor = false", "monitor = true"))
        b.signal(signal.SIGHUP)
        pf.wait_for(lambda: len(b.events("reload")) >= 1, 10, "reload")
        qid_m = queue_id_of(pf.send(sample, listener="inet")[1])
        qid_p = queue_id_of(pf.send(sample, listener="plain")[1])
        delivered, held = wait_settled(pf, {qid_m, qid_p})
        assert not held
        assert verdicts(b)[qid_m]["action"] == "monitor" and verdicts(b)[qid_m]["verdict"] == "phish"
        # Monitor mode changes nothing but header hygiene: the forged verdict is gone.
        assert header(delivered[qid_p], "X-OTPGuard-Verdict") == ["forged-but-kept"]
        assert header(delivered[qid_m], "X-OTPGuard-Verdict") == []
        assert comparable(delivered[qid_m], sample) == [
            f for f in comparable(delivered[qid_p], sample) if f != ("X-OTPGuard-Verdict", "forged-but-kept")]
        assert body_of(delivered[qid_m]) == body_of(delivered[qid_p])

        stack.config_b.write_text(original + "\n[nonsense]\nkey = 1\n")
        b.signal(signal.SIGHUP)
        pf.wait_for(lambda: len(b.events("reload_failed")) >= 1, 10, "failed reload")
        assert b.events("reload_failed")[-1]["key"] == "nonsense"
        assert b.proc is not None and b.proc.poll() is None
        pf.clear_mailbox()
        qid = queue_id_of(pf.send(sample, listener="inet")[1])
        wait_settled(pf, {qid})
        assert verdicts(b)[qid]["action"] == "monitor"  # still the last good config
    finally:
        stack.config_b.write_text(original)
        n = len(b.events("reload"))
        b.signal(signal.SIGHUP)
        pf.wait_for(lambda: len(b.events("reload")) > n, 10, "reload back")


@contextlib.contextmanager
def reloaded(server: OtpguardServer, config: Path, changes: dict[str, str]) -> Iterator[None]:
    """Edit the config, SIGHUP, wait for the reload; restore and reload again afterwards."""
    original = config.read_text()
    text = original
    for old, new in changes.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    try:
        n = len(server.events("reload"))
        config.write_text(text)
        server.signal(signal.SIGHUP)
        wait(lambda: len(server.events("reload")) > n, "reload")
        yield
    finally:
        n = len(server.events("reload"))
        config.write_text(original)
        server.signal(signal.SIGHUP)
        wait(lambda: len(server.events("reload")) > n, "reload back")


def wait(predicate, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.integration
def test_reject_and_banner_by_reload(stack: Stack) -> None:
    """Reject (5.7.1, configured text) and the warning banner in both parts of an alternative."""
    pf, b = stack.pf, stack.b
    changes = {'phish = ["tag", "quarantine"]': 'phish = ["reject"]',
               'clean = ["tag"]': 'clean = ["tag", "banner"]',
               'suspicious = ["tag"]': 'suspicious = ["tag", "banner"]',
               'reject_text = "5.7.1 Message rejected as brand impersonation (otpguard)"':
               'reject_text = "5.7.1 Rejected by otpguard: 100% fake"'}
    with reloaded(b, stack.config_b, changes):
        code, text = pf.send(PHISH[0].read_bytes(), listener="inet")
        assert (code, text) == (550, b"5.7.1 Rejected by otpguard: 100% fake")
        assert pf.queue() == []
        html = "<html><body><p>See you at lunch.</p></body></html>"
        raw = ("From: Bob <bob@example.net>\r\nTo: user@test.example\r\nSubject: lunch\r\n"
               "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n"
               "--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee you at lunch.\r\n"
               "--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
               f"\r\n{html}\r\n--b1--\r\n").encode()
        assert pf.send(raw, listener="inet")[0] == 250
        got = pf.wait_delivered(b"lunch").raw
    banner = "WARNING: this message pretends to come from a brand it does not come from."
    parsed = email.message_from_bytes(got, policy=email.policy.default)
    plain, rich = [part.get_content() for part in parsed.iter_parts()]
    assert plain.startswith(banner) and plain.rstrip().endswith("See you at lunch.")
    assert rich.startswith("<html><body><p>" + banner) and "<p>See you at lunch.</p>" in rich


@pytest.mark.integration
def test_milter_crash_mid_message_defers_and_loses_nothing(stack: Stack) -> None:
    """kill -9 during DATA: Postfix answers 4xx (milter_default_action = tempfail); a retry delivers."""
    pf, a = stack.pf, stack.a
    message = (b"From: a@sender.example\r\nTo: user@test.example\r\nSubject: crash\r\n"
               b"Message-ID: <crash-test@sender.example>\r\n\r\n" + b"body line\r\n" * 5000 + b"marker-crash\r\n")
    with smtplib.SMTP("127.0.0.1", pf.listeners["unix"], timeout=60) as smtp:
        smtp.ehlo("client.sender.example")
        assert smtp.mail("a@sender.example")[0] == 250
        assert smtp.rcpt("user@test.example")[0] == 250
        assert smtp.docmd("DATA")[0] == 354
        half = len(message) // 2
        smtp.send(message[:half])
        time.sleep(0.3)
        a.kill()
        smtp.send(message[half:] + b".\r\n")
        code, text = smtp.getreply()
    assert 400 <= code < 500, (code, text)
    assert pf.queue() == [] and pf.delivered() == []
    a.start()  # restarts on the stale socket left by the crash
    code, reply = pf.send(message, listener="unix", mail_from="a@sender.example")
    assert code == 250, reply
    got = pf.wait_delivered(b"marker-crash")
    assert header(got.raw, "Message-ID") == ["<crash-test@sender.example>"]
    assert len(pf.delivered()) == 1


@pytest.mark.integration
def test_analysis_past_the_budget_is_answered_on_time_and_delivered_tagged(stack: Stack) -> None:
    """An analysis that overruns the budget is answered per on_error at the budget, not when it ends."""
    sock = f"inet:127.0.0.1:{free_port()}"
    cfg = stack.work / "budget.toml"
    cfg.write_text(stack.config_b.read_text().replace("time_budget_seconds = 10.0", "time_budget_seconds = 0.5"))
    stuck = OtpguardServer(config=cfg, socket=sock, log=stack.work / "budget.log",
                           command=(sys.executable, str(FIXTURES / "slow_serve.py")),
                           env={"OTPGUARD_TEST_SLOW": "4", "OTPGUARD_TEST_SLOW_MODE": "spin"}).start()
    inst_gen = postfix_instance_factory({"stuck": sock}, root=stack.work / "postfix-budget")
    pf2 = next(inst_gen)
    try:
        for n in range(2):  # the second while the first analysis still runs on
            msg = (f"From: a@sender.example\r\nTo: user@test.example\r\nSubject: stuck {n}\r\n\r\n"
                   f"marker-budget-{n}\r\n").encode()
            t0 = time.monotonic()
            code, reply = pf2.send(msg, listener="stuck")
            assert code == 250, reply
            assert time.monotonic() - t0 < 5
            got = pf2.wait_delivered(f"marker-budget-{n}".encode())
            assert header(got.raw, "X-OTPGuard-Verdict") == ["error"]
        lines = stuck.events("message")
        assert [line["action"] for line in lines] == ["error-accept", "error-accept"]
        assert all("AnalysisTimeout" in line["error"] for line in lines)
    finally:
        stuck.stop()
        inst_gen.close()


@pytest.mark.integration
def test_sigterm_finishes_the_message_in_flight(stack: Stack) -> None:
    """SIGTERM while a message is being analysed: it is answered and delivered; then exit 0."""
    sock = f"inet:127.0.0.1:{free_port()}"
    slow = OtpguardServer(config=stack.config_b, socket=sock, log=stack.work / "slow.log",
                          command=(sys.executable, str(FIXTURES / "slow_serve.py")),
                          env={"OTPGUARD_TEST_SLOW": "2"}).start()
    inst_gen = postfix_instance_factory({"slow": sock}, root=stack.work / "postfix-slow")
    pf2 = next(inst_gen)
    try:
        result: list = []
        msg = b"From: a@sender.example\r\nTo: user@test.example\r\nSubject: slow\r\n\r\nmarker-slow\r\n"
        t = threading.Thread(target=lambda: result.append(pf2.send(msg, listener="slow")))
        t.start()
        time.sleep(1.0)  # the message is inside the 2 s analysis now
        t0 = time.monotonic()
        slow.signal(signal.SIGTERM)
        t.join(30)
        assert result and result[0][0] == 250, result
        assert slow.proc is not None and slow.proc.wait(30) == 0
        assert time.monotonic() - t0 < 10
        pf2.wait_delivered(b"marker-slow")
        stopping = slow.events("stopping")[0]
        assert stopping["in_flight"] == 1 and slow.events("stopped")[0]["unfinished"] == 0
        # The listener is closed: new mail is deferred by Postfix, not lost or accepted unchecked.
        code, _ = pf2.send(msg, listener="slow")
        assert 400 <= code < 500
    finally:
        slow.stop()
        inst_gen.close()


@pytest.mark.integration
def test_forged_brand_signature_on_a_message_over_max_parse_bytes_is_still_held(stack: Stack) -> None:
    """A junk DKIM-Signature d=amazon.co.jp on a spoofed lure, padded past max_parse_bytes (4 MiB in
    the shipped config), so the prefix is analysed unauthenticated: the header must not count as a
    signature, and the lure is held as phish."""
    original = (Path(__file__).resolve().parents[1] / "fixtures" / "mail" / "forged_brand_signature.eml").read_bytes()
    head, _, html = original.replace(b"\r\n", b"\n").partition(b"\n\n")
    head = head.replace(b"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: 7bit",
                        b'Content-Type: multipart/mixed; boundary="b1"')
    blob = base64.encodebytes(bytes(range(256)) * (4600 * 1024 // 256))
    raw = (head + b"\n\n--b1\nContent-Type: text/html; charset=utf-8\n\n" + html
           + b"\n--b1\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"scan.bin\"\n"
           + b"Content-Transfer-Encoding: base64\n\n" + blob + b"--b1--\n")
    assert len(raw) > 4 * 1024 * 1024 + 100_000
    code, reply = stack.pf.send(raw, listener="unix")
    assert code == 250, reply
    qid = queue_id_of(reply)
    delivered, held = wait_settled(stack.pf, {qid})
    line = verdicts(stack.a)[qid]
    assert line["verdict"] == "phish", line
    assert {"IMPERSONATION", "OTP_LURE", "BRAND_SIGNATURE_UNVERIFIED"} <= set(line["symbols"]), line
    assert qid in held
