"""The whole engine with sender authentication against a real DNS server on loopback."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from conftest import FIXTURES, mail
from otpguard.auth.dnsio import DnsClient
from otpguard.engine import Engine
from otpguard.core.model import Envelope, Level
from support.dnsserver import (  # noqa: F401  (fixtures are used by name)
    KeyRing,
    alarm,
    black_hole,
    dkim_keyring,
    dkim_sign,
    dnsmasq_module_factory,
)

pytestmark = pytest.mark.integration

AMAZON_IP = "192.0.2.25"
ATTACKER_IP = "198.51.100.66"
GENUINE = FIXTURES / "auth" / "amazon_co_jp_otp.eml"


@pytest.fixture(scope="module")
def dns_server(dnsmasq_module_factory, dkim_keyring: KeyRing):
    return dnsmasq_module_factory({
        "amazon.co.jp": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
        "bounces.amazon.co.jp": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
        "sel._domainkey.amazon.co.jp": {"TXT": [dkim_keyring.key("amazon-jp", bits=2048).txt()]},
        "_dmarc.amazon.co.jp": {"TXT": ["v=DMARC1; p=quarantine; sp=quarantine"]},
        "amaz0n-verify.test": {"TXT": ["v=spf1 ip4:198.51.100.0/24 -all"]},
        "k1._domainkey.amaz0n-verify.test": {"TXT": [dkim_keyring.key("lookalike").txt()]},
        "_dmarc.amaz0n-verify.test": {"TXT": ["v=DMARC1; p=reject"]},
        # The brand's sending domain (Amazon SNS notices), signed by its own key.
        "sns.amazonaws.com": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
        "sns1._domainkey.sns.amazonaws.com": {"TXT": [dkim_keyring.key("sns").txt()]},
    })


def make_engine(config, server, **auth) -> tuple[Engine, list[str]]:
    queries: list[str] = []
    dns = DnsClient(nameservers=("127.0.0.1",), port=server.port, query_timeout=1.0,
                    on_query=lambda seconds, outcome: queries.append(outcome))
    cfg = replace(config, auth=replace(config.auth, verify=True, **auth))
    return Engine(cfg, verify=True, dns=dns), queries


def test_genuine_brand_mail_signed_by_the_brand_key_is_genuine_and_clean(config, dns_server, dkim_keyring):
    engine, _ = make_engine(config, dns_server)
    raw = dkim_sign(GENUINE.read_bytes(), domain="amazon.co.jp", selector="sel", key=dkim_keyring.key("amazon-jp", 2048))
    d = engine.analyse(raw, Envelope(client_ip=AMAZON_IP, helo="a1.smtp-out.amazonses.com",
                                     mail_from="0106018f-bounce@bounces.amazon.co.jp"))
    assert d.genuine and d.level is Level.CLEAN and d.code_mail
    assert d.auth.dmarc == "pass" and d.auth.spf == "pass"
    header = engine.own_results_header(d)
    assert header.startswith("otpguard;") and "dmarc=pass" in header and "\n" not in header


def test_same_from_signed_by_an_attacker_key_is_phish(config, dns_server, dkim_keyring):
    engine, _ = make_engine(config, dns_server)
    raw = dkim_sign(GENUINE.read_bytes(), domain="amazon.co.jp", selector="sel", key=dkim_keyring.key("attacker"))
    d = engine.analyse(raw, Envelope(client_ip=ATTACKER_IP, helo="mail.attacker.example",
                                     mail_from="bounce@bounces.amazon.co.jp"))
    assert d.level is Level.PHISH and not d.genuine
    assert "DMARC_FAIL_BRAND_DOMAIN" in d.symbols
    assert [r.result for r in d.auth.dkim] == ["fail"]


def test_lookalike_that_passes_its_own_spf_and_dkim_is_still_phish(config, dns_server, dkim_keyring):
    engine, _ = make_engine(config, dns_server)
    raw = mail("lookalike_sender_otp.eml").replace(b"amaz0n-security.com", b"amaz0n-verify.test")
    raw = dkim_sign(raw, domain="amaz0n-verify.test", selector="k1", key=dkim_keyring.key("lookalike"))
    d = engine.analyse(raw, Envelope(client_ip=ATTACKER_IP, helo="mail.amaz0n-verify.test",
                                     mail_from="bounce@amaz0n-verify.test"))
    assert d.auth.dmarc == "pass" and d.auth.from_domain == "amaz0n-verify.test"
    assert d.level is Level.PHISH and not d.genuine and "LOOKALIKE_FROM_DOMAIN" in d.symbols


def test_mail_that_claims_no_brand_costs_no_dns_in_brand_scope(config, dns_server):
    engine, queries = make_engine(config, dns_server)
    d = engine.analyse(mail("ordinary_newsletter.eml").replace(b"Amazon", b"the bookshop"), Envelope(client_ip=ATTACKER_IP))
    assert d.auth is None and queries == []
    engine_all, queries_all = make_engine(config, dns_server, scope="all")
    engine_all.analyse(mail("ordinary_newsletter.eml"), Envelope(client_ip=ATTACKER_IP, mail_from="n@bookclub.example"))
    assert queries_all  # scope "all" looks every message up


def test_dns_black_hole_ends_within_the_budget_with_temperror(config, black_hole, alarm):
    dns = DnsClient(nameservers=("127.0.0.1",), port=black_hole.port, query_timeout=0.5)
    cfg = replace(config, auth=replace(config.auth, verify=True, message_budget=1.0))
    started = time.monotonic()
    d = Engine(cfg, verify=True, dns=dns).analyse(GENUINE.read_bytes(), Envelope(client_ip=AMAZON_IP, helo="x",
                                                                              mail_from="b@bounces.amazon.co.jp"))
    # The 1 s message budget, and not much more (SPF, DKIM and DMARC would wait 0.5 s per query).
    assert time.monotonic() - started < 1.0 + 0.75
    assert "temperror" in (d.auth.spf, d.auth.dmarc)
    assert "AUTH_TEMPERROR" in d.symbols
    assert d.level is Level.CLEAN  # a DNS failure is never a verdict by itself


def test_scan_verify_reports_auth_in_json(dns_server, dkim_keyring, tmp_path):
    raw = dkim_sign(GENUINE.read_bytes(), domain="amazon.co.jp", selector="sel", key=dkim_keyring.key("amazon-jp", 2048))
    (tmp_path / "signed.eml").write_bytes(raw)
    proc = subprocess.run([sys.executable, "-m", "otpguard.cli", "scan", "--json", "--verify", "--dns",
                           f"127.0.0.1:{dns_server.port}", "--client-ip", AMAZON_IP, "--helo", "a1.amazonses.com",
                           "--mail-from", "b@bounces.amazon.co.jp", str(tmp_path / "signed.eml")],
                          capture_output=True, text=True, timeout=60)
    row = json.loads(proc.stdout)
    assert row["genuine"] is True and row["verdict"] == "clean"
    assert row["auth"]["spf"] == "pass"
    assert row["auth"]["dkim"] == [{"domain": "amazon.co.jp", "selector": "sel", "result": "pass"}]
    assert row["auth"]["dmarc"]["result"] == "pass" and row["auth"]["dmarc"]["policy"].startswith("quarantine")
    assert row["auth"]["dmarc"]["aligned"]


def test_a_resolver_that_cannot_see_the_brand_gives_temperror_never_phish(config, dnsmasq_module_factory,
                                                                          dkim_keyring):
    """NXDOMAIN for every name: the brand's key, policy and SPF record are unseen, not missing."""
    blind = dnsmasq_module_factory({})
    engine, _ = make_engine(config, blind)
    raw = dkim_sign(GENUINE.read_bytes(), domain="amazon.co.jp", selector="sel", key=dkim_keyring.key("amazon-jp", 2048))
    d = engine.analyse(raw, Envelope(client_ip=AMAZON_IP, helo="a1.smtp-out.amazonses.com",
                                     mail_from="0106018f-bounce@bounces.amazon.co.jp"))
    assert d.level is Level.CLEAN and not d.genuine
    assert (d.auth.spf, d.auth.dmarc, [k.result for k in d.auth.dkim]) == ("temperror", "temperror", ["temperror"])
    assert set(d.symbols) == {"AUTH_TEMPERROR", "BRAND_SIGNATURE_UNVERIFIED", "FROM_BRAND_DOMAIN"}
    reasons = {h.symbol: h.reason for h in d.hits}
    assert "dkim=temperror d=amazon.co.jp" in reasons["AUTH_TEMPERROR"]
    assert reasons["BRAND_SIGNATURE_UNVERIFIED"].endswith("dkim=temperror")
    header = engine.own_results_header(d)
    assert "dkim=temperror header.d=amazon.co.jp" in header and "dmarc=temperror" in header


def test_a_missing_brand_key_on_a_working_resolver_stays_a_permerror(config, dns_server, dkim_keyring):
    """A selector the brand never published, while the resolver sees the brand: a forgery's
    permerror (not a DNS failure), and DMARC fails as it should."""
    engine, _ = make_engine(config, dns_server)
    raw = dkim_sign(GENUINE.read_bytes(), domain="amazon.co.jp", selector="nosuchkey", key=dkim_keyring.key("attacker"))
    d = engine.analyse(raw, Envelope(client_ip=ATTACKER_IP, helo="mail.attacker.example",
                                     mail_from="bounce@attacker.example"))
    assert [k.result for k in d.auth.dkim] == ["permerror"] and d.auth.dmarc == "fail"
    assert d.level is Level.PHISH and "DMARC_FAIL_BRAND_DOMAIN" in d.symbols
    assert "AUTH_TEMPERROR" not in d.symbols


def test_permerror_is_not_counted_as_a_failed_signature(config, dkim_keyring, dnsmasq_module_factory):
    """A brand without a DMARC record (here: no _dmarc at all) and a brand signature with no key:
    DKIM_PERMERROR_BRAND_DOMAIN, weightless, not DKIM_FAIL_BRAND_DOMAIN."""
    server = dnsmasq_module_factory({"amazon.co.jp": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]}})
    engine, _ = make_engine(config, server)
    raw = dkim_sign(GENUINE.read_bytes(), domain="amazon.co.jp", selector="gone", key=dkim_keyring.key("amazon-jp", 2048))
    d = engine.analyse(raw, Envelope(client_ip=AMAZON_IP, helo="a1.smtp-out.amazonses.com",
                                     mail_from="0106018f-bounce@amazon.co.jp"))
    assert [k.result for k in d.auth.dkim] == ["permerror"] and d.auth.dmarc == "none"
    assert "DKIM_PERMERROR_BRAND_DOMAIN" in d.symbols and "DKIM_FAIL_BRAND_DOMAIN" not in d.symbols
    assert "FROM_BRAND_UNSIGNED" not in d.symbols
    assert d.level is Level.CLEAN


def test_an_authenticated_aws_notice_from_the_brand_sending_domain_is_clean(config, dns_server, dkim_keyring):
    """no-reply@sns.amazonaws.com, signed by sns.amazonaws.com: the brand's own service mail.
    amazonaws.com contains "amazon" and is Amazon's: never a lookalike."""
    engine, _ = make_engine(config, dns_server)
    raw = dkim_sign((FIXTURES / "genuine" / "aws_sns_cloudwatch_alarm.eml").read_bytes(),
                    domain="sns.amazonaws.com", selector="sns1", key=dkim_keyring.key("sns"))
    d = engine.analyse(raw, Envelope(client_ip=AMAZON_IP, helo="a8-30.smtp-out.amazonses.com",
                                     mail_from="bounce@sns.amazonaws.com"))
    assert [r.result for r in d.auth.dkim] == ["pass"] and d.auth.spf == "pass"
    assert d.level is Level.CLEAN and d.score == 0, [(h.symbol, h.reason) for h in d.hits]
    assert not {"LOOKALIKE_FROM_DOMAIN", "LINK_LOOKALIKE_DOMAIN", "IMPERSONATION"} & set(d.symbols)
