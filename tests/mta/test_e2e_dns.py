"""End to end with a resolver that answers NXDOMAIN for everything (issue 15).

A filtering or broken resolver says amazon.co.jp does not exist. Genuine Amazon mail, signed
with a real key that this resolver cannot show, must not become phish: what the resolver says
about the brand's own names is a temporary error, never evidence. The symbols' reasons use the
words of otpguard's own Authentication-Results header; the DNS probe says the resolver cannot
see the brand (metric, log line), and so does `otpguard doctor`.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from support.dnsserver import DnsmasqServer, KeyRing, dkim_sign
from support.postfix import (OTPGUARD, OtpguardServer, PostfixInstance, free_port, header,
                             postfix_instance_factory, shared_tmpdir, write_test_config)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GENUINE = ROOT / "tests" / "fixtures" / "auth" / "amazon_co_jp_otp.eml"


@dataclass
class Stack:
    work: Path
    pf: PostfixInstance
    server: OtpguardServer
    config: Path
    metrics_url: str


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    work = shared_tmpdir("otpguard-e2e-nxdomain-")
    (work / "sock").mkdir(mode=0o755)
    sock = f"unix:{work}/sock/otpguard.sock"
    (work / "dns").mkdir()
    dns = DnsmasqServer({}, workdir=work / "dns")  # no zone at all: NXDOMAIN for every name
    postfix = postfix_instance_factory({"unix": sock}, root=work / "postfix")
    server = None
    try:
        pf = next(postfix)
        dns.start()
        cfg = write_test_config(work / "otpguard.toml", socket_spec=sock, changes={
            'format = "logfmt"': 'format = "json"', "verify = false": "verify = true",
            "nameservers = []": 'nameservers = ["127.0.0.1"]', "port = 53": f"port = {dns.port}",
            "query_timeout = 2.0": "query_timeout = 1.0",
            "clean = []": 'clean = ["tag"]', "genuine = []": 'genuine = ["tag"]'})
        port = free_port()
        server = OtpguardServer(config=cfg, socket=sock, log=work / "otpguard.log",
                                command=(OTPGUARD, "serve", "--metrics", f"127.0.0.1:{port}")).start()
        yield Stack(work=work, pf=pf, server=server, config=cfg, metrics_url=f"http://127.0.0.1:{port}/metrics")
    finally:
        if server is not None:
            server.stop()
        postfix.close()
        dns.close()
        shutil.rmtree(work, ignore_errors=True)


def test_genuine_amazon_mail_is_not_phish_and_the_reasons_match_our_results(stack: Stack) -> None:
    # Signed with a key of its own, that only a resolver seeing amazon.co.jp could show.
    raw = dkim_sign(GENUINE.read_bytes(), domain="amazon.co.jp", selector="sel", key=KeyRing().key("amazon"))
    code, reply = stack.pf.send(raw, listener="unix", mail_from="0106018f-bounce@bounces.amazon.co.jp")
    assert code == 250, reply
    got = stack.pf.wait_delivered(b"-otp-000000@").raw
    verdict = header(got, "X-OTPGuard-Verdict")[0]
    assert verdict.startswith("clean; score="), verdict
    ours = [v for v in header(got, "Authentication-Results") if v.startswith("otpguard;")]
    assert len(ours) == 1
    results = re.sub(r"\s+", " ", ours[0])
    assert "dkim=temperror header.d=amazon.co.jp" in results and "dmarc=temperror" in results
    assert "spf=temperror" in results
    symbols = re.sub(r"\s+", " ", header(got, "X-OTPGuard-Symbols")[0])
    # A DNS failure is one weightless symbol: never a failed signature, never "no signature".
    for absent in ("FROM_BRAND_UNSIGNED", "DKIM_FAIL_BRAND_DOMAIN", "DMARC_FAIL_BRAND_DOMAIN",
                   "DKIM_PERMERROR_BRAND_DOMAIN", "IMPERSONATION"):
        assert absent not in symbols, symbols
    assert "AUTH_TEMPERROR(0)" in symbols and "BRAND_SIGNATURE_UNVERIFIED(0)" in symbols
    # Every method=result a reason states is what our Authentication-Results header says.
    stated = set(re.findall(r"\b(spf|dkim|dmarc)=([a-z]+)", symbols))
    assert stated and all(f"{m}={r}" in results for m, r in stated), (stated, results)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def test_the_dns_probe_says_the_resolver_cannot_see_the_brand(stack: Stack) -> None:
    deadline = time.monotonic() + 30
    while not stack.server.events("dns_probe_failed"):
        assert time.monotonic() < deadline, "no dns_probe_failed event"
        time.sleep(0.1)
    event = stack.server.events("dns_probe_failed")[0]
    assert event["level"] == "error" and event["domains"] == ["amazon.com"]
    assert any(p.startswith("amazon.com: NXDOMAIN") for p in event["problems"])
    text = scrape(stack.metrics_url)
    assert re.search(r"^otpguard_dns_probe_success 0\.0$", text, re.M), text
    assert "_created" not in text


def test_doctor_names_the_invisible_brand(stack: Stack) -> None:
    res = subprocess.run([OTPGUARD, "doctor", "--config", str(stack.config), "--socket", stack.server.socket,
                          "--postfix-config", str(stack.pf.confdir), "--user", "postfix"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    problems = [ln for ln in res.stdout.splitlines() if ln.startswith("problem: ")]
    assert problems == ["problem: dns: amazon.com: NXDOMAIN: the resolver says the domain does not exist "
                        "(broken or filtering resolver); its mail cannot be authenticated"], res.stdout
