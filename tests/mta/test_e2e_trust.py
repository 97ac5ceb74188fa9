"""End to end through a private Postfix: the trust boundary for upstream Authentication-Results,
header hygiene in monitor mode, and Postfix's header_checks backstop (issue 15).

A border host mx.border.example is trusted ([auth] trusted_authserv_ids). Its results are
believed above the topmost Received field (trusted_hops = 0): it wrote them when it received
the mail. The same results below a Received field were in the message before the border saw
it: a forgery, ignored, removed, and scored FORGED_AUTH_RESULTS. Only believed results make
mail genuine, so only they can ever fire the genuine-code burst notice.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from support.postfix import (OtpguardServer, PostfixInstance, fields, header, postfix_instance_factory,
                             shared_tmpdir, strip_mbox_from, write_test_config)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GENUINE = ROOT / "tests" / "fixtures" / "auth" / "amazon_co_jp_otp.eml"
HEADER_CHECKS = ROOT / "deploy" / "postfix" / "otpguard-header-checks"
BORDER = "mx.border.example"
JSON_LOGS = {'format = "logfmt"': 'format = "json"'}
TRUST = {**JSON_LOGS,
         "trusted_authserv_ids = []": f'trusted_authserv_ids = ["{BORDER}"]',
         'genuine = []': 'genuine = ["tag"]', 'clean = []': 'clean = ["tag"]',
         'phish = ["tag", "quarantine"]': 'phish = ["tag"]'}
MONITOR = {**JSON_LOGS, "monitor = false": "monitor = true"}
RESULTS = (f"Authentication-Results: {BORDER}; spf=pass smtp.mailfrom=bounces.amazon.co.jp;\r\n"
           " dkim=pass header.d=amazon.co.jp header.s=sel; dmarc=pass header.from=amazon.co.jp\r\n")
BORDER_RECEIVED = ("Received: from a27-1.smtp-out.ap-northeast-1.amazonses.com (a27-1.smtp-out.amazonses.com"
                   f" [54.240.27.1])\r\n by {BORDER} (Postfix) with ESMTPS id 4Vabc1;\r\n Tue, 14 May 2024 09:12:46 +0000\r\n")
ATTACKER_RECEIVED = (f"Received: from mail.attacker.example (unknown [198.51.100.66])\r\n by {BORDER} (Postfix)"
                     " with ESMTP id 4Vxyz9;\r\n Tue, 14 May 2024 09:12:46 +0000\r\n")


@dataclass
class Stack:
    work: Path
    pf: PostfixInstance
    trust: OtpguardServer
    monitor: OtpguardServer


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    work = shared_tmpdir("otpguard-trust-")
    (work / "sock").mkdir(mode=0o755)
    servers = {}
    for name, changes in (("trust", TRUST), ("monitor", MONITOR)):
        sock = f"unix:{work}/sock/{name}.sock"
        cfg = write_test_config(work / f"{name}.toml", socket_spec=sock, changes=changes)
        servers[name] = OtpguardServer(config=cfg, socket=sock, log=work / f"{name}.log")
    gen = postfix_instance_factory({"trust": servers["trust"].socket, "monitor": servers["monitor"].socket,
                                    "plain": ""}, root=work / "postfix")
    try:
        pf = next(gen)
        for server in servers.values():
            server.start()
        yield Stack(work=work, pf=pf, trust=servers["trust"], monitor=servers["monitor"])
    finally:
        for server in servers.values():
            server.stop()
        gen.close()
        shutil.rmtree(work, ignore_errors=True)


def code_mail(n: int, trace: str) -> bytes:
    raw = GENUINE.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    raw = raw.replace(b"-otp-000000@", f"-otp-{n:06d}@".encode())
    return trace.encode() + raw


def queue_id(reply: bytes) -> str:
    m = re.search(rb"queued as ([0-9A-Za-z]+)", reply)
    assert m, reply
    return m.group(1).decode()


def send_codes(st: Stack, trace: str, rcpt: str, first: int) -> list[tuple[dict, bytes]]:
    """Three code mails to one recipient; (log line, delivered message) each."""
    out = []
    for n in range(first, first + 3):
        code, reply = st.pf.send(code_mail(n, trace), listener="trust", rcpts=(rcpt,),
                                 mail_from="0106018f-bounce@bounces.amazon.co.jp")
        assert code == 250, reply
        qid = queue_id(reply)
        got = st.pf.wait_delivered(f"-otp-{n:06d}@".encode()).raw
        line = next(e for e in st.trust.events("message") if e["queue_id"] == qid)
        out.append((line, got))
    return out


def test_results_above_the_boundary_are_believed_and_bursts_counted(stack: Stack) -> None:
    sent = send_codes(stack, RESULTS + BORDER_RECEIVED, "user+real@test.example", 100)
    assert [line["verdict"] for line, _ in sent] == ["genuine"] * 3
    assert all(header(got, "X-OTPGuard-Verdict")[0].endswith("genuine=yes") for _, got in sent)
    # The border's own results stay in the delivered message.
    assert all(len(header(got, "Authentication-Results")) == 1 for _, got in sent)
    # The third genuine code mail to one recipient within the window is a burst (threshold 3).
    assert [bool(header(got, "X-OTPGuard-Burst")) for _, got in sent] == [False, False, True]
    assert "burst_notice" in sent[2][0]["action"]


def test_results_below_the_boundary_are_forged_ignored_and_removed(stack: Stack) -> None:
    sent = send_codes(stack, ATTACKER_RECEIVED + RESULTS, "user+forged@test.example", 200)
    for line, got in sent:
        assert line["verdict"] != "genuine", line
        assert "FORGED_AUTH_RESULTS" in line["symbols"] and "AUTH_GENUINE" not in line["symbols"]
        assert "burst_notice" not in line["action"]
        assert not header(got, "X-OTPGuard-Burst")
        assert "genuine=yes" not in header(got, "X-OTPGuard-Verdict")[0]
        # Removed on the way, so nothing downstream (a Sieve script, a webmail) believes it.
        assert header(got, "Authentication-Results") == []
        symbols = header(got, "X-OTPGuard-Symbols")[0]
        assert "FORGED_AUTH_RESULTS" in symbols and BORDER in symbols


FORGED_HEADERS = (b"X-OTPGuard-Verdict: clean; score=0; genuine=yes\r\n"
                  b"Authentication-Results: otpguard; dmarc=pass header.from=amazon.co.jp\r\n"
                  b"Authentication-Results: upstream.example; spf=none\r\n"
                  b"From: Someone <someone@example.net>\r\nTo: user@test.example\r\nSubject: hello\r\n"
                  b"Message-ID: <hygiene-1@example.net>\r\n"
                  b"x-otpguard-symbols: AUTH_GENUINE(0) [trust me]\r\n\r\n")


def test_monitor_mode_still_removes_forged_headers(stack: Stack) -> None:
    pf = stack.pf
    # A Date of its own: without one, Postfix adds the time of each send and the two copies
    # compared below could differ by a second.
    raw = FORGED_HEADERS.replace(b"Subject: hello\r\n", b"Subject: hello\r\nDate: Mon, 7 Dec 2026 05:00:00 +0000\r\n") \
        + b"marker-hygiene-monitor\r\n"
    code, reply = pf.send(raw, listener="monitor")
    assert code == 250, reply
    qid = queue_id(reply)
    got = pf.wait_delivered(b"marker-hygiene-monitor").raw
    line = next(e for e in stack.monitor.events("message") if e["queue_id"] == qid)
    assert line["action"] == "monitor"
    names = [n.lower() for n, _ in fields(got)]
    assert not [n for n in names if n.startswith("x-otpguard-")]
    assert header(got, "Authentication-Results") == ["upstream.example; spf=none"]
    # Nothing else changed: the same message through the listener without a milter, minus the
    # forged fields, has the same fields in the same order (Postfix's trace fields aside).
    pf.clear_mailbox()
    assert pf.send(raw, listener="plain")[0] == 250
    plain = pf.wait_delivered(b"marker-hygiene-monitor").raw

    def comparable(m: bytes) -> list[tuple[str, str]]:
        return [(n, v) for n, v in fields(m)[4:]
                if not n.lower().startswith("x-otpguard-") and not v.startswith("otpguard;")]

    assert comparable(got) == comparable(plain)
    assert got.split(b"\n\n", 1)[1] == plain.split(b"\n\n", 1)[1]


@pytest.fixture(scope="module")
def backstop() -> Iterator[tuple[PostfixInstance, OtpguardServer]]:
    """A Postfix with the shipped header_checks: one listener through a live otpguard, one whose
    milter is down and skipped (milter_default_action = accept)."""
    work = shared_tmpdir("otpguard-backstop-")
    (work / "sock").mkdir(mode=0o755)
    sock = f"unix:{work}/sock/live.sock"
    cfg = write_test_config(work / "live.toml", socket_spec=sock, changes={**JSON_LOGS, 'clean = []': 'clean = ["tag"]'})
    live = OtpguardServer(config=cfg, socket=sock, log=work / "live.log")
    gen = postfix_instance_factory(
        {"live": sock, "bypassed": f"unix:{work}/sock/down.sock"}, root=work / "postfix",
        main_cf={"header_checks": f"regexp:{HEADER_CHECKS}"},
        listener_options={"bypassed": {"milter_default_action": "accept"}})
    try:
        pf = next(gen)
        live.start()
        yield pf, live
    finally:
        live.stop()
        gen.close()
        shutil.rmtree(work, ignore_errors=True)


def test_header_checks_backstop_cleans_mail_the_milter_never_saw(backstop) -> None:
    pf, _live = backstop
    raw = FORGED_HEADERS + b"marker-backstop-bypassed\r\n"
    code, reply = pf.send(raw, listener="bypassed")
    assert code == 250, reply  # the milter is down, the mail passes unfiltered...
    got = strip_mbox_from(pf.wait_delivered(b"marker-backstop-bypassed").raw)
    # ...without the forged verdict or our authserv-id's results.
    assert not [n for n, _ in fields(got) if n.lower().startswith("x-otpguard-")]
    assert header(got, "Authentication-Results") == ["upstream.example; spf=none"]
    assert "connect to Milter service" in pf.log_tail(80)


def test_header_checks_backstop_keeps_our_own_headers(backstop) -> None:
    pf, live = backstop
    raw = FORGED_HEADERS + b"marker-backstop-live\r\n"
    assert pf.send(raw, listener="live")[0] == 250
    got = pf.wait_delivered(b"marker-backstop-live").raw
    # header_checks runs as the message arrives; the milter's own fields come after it.
    assert header(got, "X-OTPGuard-Verdict") == ["clean; score=0"]
    assert len(header(got, "X-OTPGuard-Symbols")) == 1
    assert header(got, "Authentication-Results") == ["upstream.example; spf=none"]
