"""End to end through a private Postfix: allow and deny lists, per-recipient-domain policy (issue 15).

otpguard verifies DKIM against a dnsmasq on loopback. The allow list names a partner by its
DKIM domain (an identity authentication proved), the deny list a spammer; a From-domain allow
entry is refused at load, at start as on reload. Mail to strict.example is rejected at lower
thresholds, mail to trial.example is only watched (monitor mode), mail to test.example gets the
global policy, and so does mail to recipients in both.
"""
from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from support.dnsserver import DnsmasqServer, KeyRing, dkim_sign
from support.postfix import (OTPGUARD, OtpguardServer, PostfixInstance, fields, free_port, header,
                             postfix_instance_factory, shared_tmpdir, write_test_config)

pytestmark = pytest.mark.integration

KEYS = KeyRing()
ZONES = {
    "partner.test": {"TXT": ["v=spf1 -all"]},
    "sel._domainkey.partner.test": {"TXT": [KEYS.key("partner").txt()]},
    "spammer.test": {"TXT": ["v=spf1 -all"]},
    "sel._domainkey.spammer.test": {"TXT": [KEYS.key("spammer").txt()]},
    "other.test": {"TXT": ["v=spf1 -all"]},
    "sel._domainkey.other.test": {"TXT": [KEYS.key("other").txt()]},
}
ALLOW = "# partners whose signed mail is never held\ndkim:partner.test\nip:192.0.2.0/24\n"
DENY = "dkim:spammer.test   # a sender we never want\n"
OVERRIDES = """
[policy.recipient_domains."strict.example".actions]
phish = ["reject"]
[policy.recipient_domains."strict.example".scoring]
suspicious = 1.0
phish = 2.0
[policy.recipient_domains."trial.example".actions]
monitor = true
"""


def lure(domain: str, n: int, key: str | None = None) -> bytes:
    """A display-name spoof asking for a code, from `domain`, signed by its key (or another one)."""
    raw = (f'From: "Amazon Security" <alerts@{domain}>\r\nTo: user@test.example\r\n'
           f"Subject: Amazon: your one-time password\r\nMessage-ID: <lure-{n}@{domain}>\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           "Someone tried to sign in to your Amazon account. Your verification code is 482913.\r\n"
           f"If this was not you, verify your account at https://{domain}/amazon/login within 24 hours.\r\n"
           f"marker-lure-{n}\r\n").encode()
    return dkim_sign(raw, domain=domain, selector="sel", key=KEYS.key(key or domain.split(".")[0]))


def plain_mail(domain: str, n: int, subject: str = "weekly picks", display: str = "Book club") -> bytes:
    raw = (f'From: "{display}" <news@{domain}>\r\nTo: user@test.example\r\nSubject: {subject}\r\n'
           f"Message-ID: <plain-{n}@{domain}>\r\n\r\nHere are this week's favourite books.\r\nmarker-plain-{n}\r\n").encode()
    return dkim_sign(raw, domain=domain, selector="sel", key=KEYS.key(domain.split(".")[0]))


@dataclass
class Stack:
    work: Path
    pf: PostfixInstance
    server: OtpguardServer
    config: Path
    allow: Path
    metrics_url: str


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    work = shared_tmpdir("otpguard-e2e-policy-")
    (work / "sock").mkdir(mode=0o755)
    (work / "dns").mkdir()
    sock = f"unix:{work}/sock/otpguard.sock"
    dns = DnsmasqServer(ZONES, workdir=work / "dns")
    postfix = postfix_instance_factory(
        {"unix": sock}, root=work / "postfix",
        main_cf={"virtual_mailbox_domains": "test.example, strict.example, trial.example"})
    server = None
    try:
        pf = next(postfix)
        dns.start()
        (work / "allow.list").write_text(ALLOW)
        (work / "deny.list").write_text(DENY)
        cfg = write_test_config(work / "otpguard.toml", socket_spec=sock, changes={
            'format = "logfmt"': 'format = "json"', "verify = false": "verify = true",
            "nameservers = []": 'nameservers = ["127.0.0.1"]', "port = 53": f"port = {dns.port}",
            "probe_interval_seconds = 300": "probe_interval_seconds = 0",
            'allow_file = ""': 'allow_file = "allow.list"', 'deny_file = ""': 'deny_file = "deny.list"',
            "clean = []": 'clean = ["tag"]'})
        cfg.write_text(cfg.read_text() + OVERRIDES)
        port = free_port()
        server = OtpguardServer(config=cfg, socket=sock, log=work / "otpguard.log",
                                command=(OTPGUARD, "serve", "--metrics", f"127.0.0.1:{port}")).start()
        yield Stack(work=work, pf=pf, server=server, config=cfg, allow=work / "allow.list",
                    metrics_url=f"http://127.0.0.1:{port}/metrics")
    finally:
        if server is not None:
            server.stop()
        postfix.close()
        dns.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(autouse=True)
def empty(stack: Stack) -> None:
    stack.pf.delete_all()
    stack.pf.clear_mailbox()


def queue_id(reply: bytes) -> str:
    m = re.search(rb"queued as ([0-9A-Za-z]+)", reply)
    assert m, reply
    return m.group(1).decode()


def line_for(stack: Stack, qid: str) -> dict:
    deadline = time.monotonic() + 10
    while True:
        found = [e for e in stack.server.events("message") if e["queue_id"] == qid]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no log line for {qid}"
        time.sleep(0.05)


def sighup(stack: Stack, event: str) -> dict:
    """Send SIGHUP and wait for the next `event` (reload or reload_failed); that event."""
    n = len(stack.server.events(event))
    stack.server.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while len(stack.server.events(event)) == n:
        assert time.monotonic() < deadline, f"no {event} after SIGHUP"
        time.sleep(0.05)
    return stack.server.events(event)[-1]


def metric(stack: Stack, name: str, **labels: str) -> float:
    with urllib.request.urlopen(stack.metrics_url, timeout=10) as resp:
        text = resp.read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    m = re.search(rf"^{name}\{{{re.escape(want)}\}} (\S+)$", text, re.M)
    assert m, f"{name}{{{want}}} not in /metrics"
    return float(m.group(1))


def test_an_allowed_authenticated_partner_passes_an_unlisted_sender_does_not(stack: Stack) -> None:
    pf = stack.pf
    before = metric(stack, "otpguard_policy_matches_total", kind="dkim", list="allow")
    # The same lure from a sender that is not listed is held as phish...
    code, reply = pf.send(lure("other.test", 1), listener="unix", mail_from="alerts@other.test")
    assert code == 250
    held = queue_id(reply)
    pf.wait_held()
    assert line_for(stack, held)["verdict"] == "phish"
    # ...and from the partner, whose signature verified, it is delivered as clean.
    code, reply = pf.send(lure("partner.test", 2), listener="unix", mail_from="alerts@partner.test")
    assert code == 250
    got = pf.wait_delivered(b"marker-lure-2").raw
    line = line_for(stack, queue_id(reply))
    assert line["verdict"] == "clean" and "POLICY_ALLOW" in line["symbols"]
    assert header(got, "X-OTPGuard-Verdict")[0].startswith("clean; score=")
    symbols = re.sub(r"\s+", " ", header(got, "X-OTPGuard-Symbols")[0])
    assert "POLICY_ALLOW(-100) [allow list line 2: dkim:partner.test]" in symbols
    assert metric(stack, "otpguard_policy_matches_total", kind="dkim", list="allow") == before + 1


def test_a_partner_signature_that_does_not_verify_is_not_allowed(stack: Stack) -> None:
    # Signed with the partner's d= but another key: anyone can write a DKIM-Signature header.
    raw = lure("partner.test", 3, key="forger")
    code, reply = stack.pf.send(raw, listener="unix", mail_from="alerts@partner.test")
    assert code == 250
    stack.pf.wait_held()
    line = line_for(stack, queue_id(reply))
    assert line["verdict"] == "phish" and "POLICY_ALLOW" not in line["symbols"]


def test_a_denied_sender_is_phish_however_harmless(stack: Stack) -> None:
    before = metric(stack, "otpguard_policy_matches_total", kind="dkim", list="deny")
    code, reply = stack.pf.send(plain_mail("spammer.test", 1), listener="unix", mail_from="news@spammer.test")
    assert code == 250
    stack.pf.wait_held()
    line = line_for(stack, queue_id(reply))
    assert line["verdict"] == "phish" and line["symbols"][0] == "POLICY_DENY"
    assert metric(stack, "otpguard_policy_matches_total", kind="dkim", list="deny") == before + 1


def test_an_unauthenticated_from_allow_entry_is_refused_at_load(stack: Stack) -> None:
    original = stack.allow.read_text()
    try:
        stack.allow.write_text("from:partner.test\n")
        res = subprocess.run([OTPGUARD, "check-config", str(stack.config)], capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 2
        assert str(stack.allow) in res.stderr and "line 1" in res.stderr and "refused" in res.stderr
        assert "dmarc:partner.test" in res.stderr  # what to write instead
        failed = sighup(stack, "reload_failed")
        assert failed["file"] == str(stack.allow) and failed["key"] == "line 1"
        # The running lists stay: the signed partner still passes.
        code, reply = stack.pf.send(lure("partner.test", 4), listener="unix", mail_from="alerts@partner.test")
        assert code == 250
        stack.pf.wait_delivered(b"marker-lure-4")
        assert "POLICY_ALLOW" in line_for(stack, queue_id(reply))["symbols"]
    finally:
        stack.allow.write_text(original)


def test_recipient_domains_get_their_own_actions_and_thresholds(stack: Stack) -> None:
    pf = stack.pf
    # strict.example: phish is rejected...
    code, text = pf.send(lure("other.test", 10), listener="unix", rcpts=("user@strict.example",))
    assert (code, text) == (550, b"5.7.1 Message rejected as brand impersonation (otpguard)")
    # ...at its lower thresholds too: a brand display name alone (2.5, clean elsewhere) is phish there.
    mild = plain_mail("other.test", 11, display="Amazon fan club")
    code, _ = pf.send(mild, listener="unix", rcpts=("user@strict.example",))
    assert code == 550
    code, reply = pf.send(mild, listener="unix", rcpts=("user@test.example",))
    assert code == 250
    assert header(pf.wait_delivered(b"marker-plain-11").raw, "X-OTPGuard-Verdict")[0].startswith("clean;")
    # trial.example: monitor mode, the phish is delivered untouched.
    code, reply = pf.send(lure("other.test", 12), listener="unix", rcpts=("user@trial.example",))
    assert code == 250
    got = pf.wait_delivered(b"marker-lure-12").raw
    assert not [n for n, _ in fields(got) if n.lower().startswith("x-otpguard-")]
    line = line_for(stack, queue_id(reply))
    assert (line["verdict"], line["action"]) == ("phish", "monitor")
    # Recipients in two domains: one message, the global policy (held).
    code, reply = pf.send(lure("other.test", 13), listener="unix",
                          rcpts=("user@strict.example", "user@test.example"))
    assert code == 250
    pf.wait_held()
    assert line_for(stack, queue_id(reply))["action"] == "tag+quarantine"


def test_list_files_are_read_again_on_sighup(stack: Stack) -> None:
    deny = stack.work / "deny.list"
    original = deny.read_text()
    try:
        deny.write_text(original + "dkim:other.test\n")
        sighup(stack, "reload")
        code, reply = stack.pf.send(plain_mail("other.test", 20), listener="unix", mail_from="news@other.test")
        assert code == 250
        stack.pf.wait_held()
        line = line_for(stack, queue_id(reply))
        assert line["verdict"] == "phish" and line["symbols"][0] == "POLICY_DENY"
    finally:
        deny.write_text(original)
        sighup(stack, "reload")
