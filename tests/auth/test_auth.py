"""Sender authentication against a real dnsmasq: SPF, DKIM, ARC and DMARC as a receiver sees them."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from otpguard.auth.verify import DmarcRecord, check_spf, evaluate_dmarc, parse_dmarc, verify, verify_detail
from otpguard.auth.settings import AuthConfig
from otpguard.auth.dnsio import DnsClient
from otpguard.core.model import AuthSummary, DkimResult, Envelope
from support.dnsserver import (  # noqa: F401  (fixtures are used by name)
    BlackHoleServer,
    DnsmasqFactory,
    DnsmasqServer,
    KeyRing,
    Zones,
    add_header,
    alarm,
    arc_seal,
    black_hole,
    crlf,
    dkim_keyring,
    dkim_sign,
    dnsmasq_factory,
    dnsmasq_module_factory,
    require,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "auth"
from conftest import CORPUS  # noqa: E402  (one setting: OTPGUARD_CORPUS)

AMAZON_IP = "192.0.2.25"  # in amazon.co.jp's SPF
AMAZON_COM_IP = "54.240.13.167"
ATTACKER_IP = "198.51.100.66"
LIST_IP = "203.0.113.50"
LOOKALIKE_IP = "203.0.113.99"

TRUSTED = AuthConfig(trusted_arc_sealers=("list.example",))


def zones(keys: KeyRing) -> Zones:
    """One hermetic Internet: Amazon, an attacker, a lookalike, mailing lists, policy test domains."""
    return {
        # Amazon Japan: SPF with mx, a and include; a 2048-bit key (TXT split over 255 octets).
        "amazon.co.jp": {"TXT": ["v=spf1 mx include:_spf.amazon.co.jp -all"],
                         "MX": [(10, "mx1.amazon.co.jp")]},
        "mx1.amazon.co.jp": {"A": ["192.0.2.10"]},
        "_spf.amazon.co.jp": {"TXT": ["v=spf1 ip4:192.0.2.16/28 -all"]},
        "sel._domainkey.amazon.co.jp": {"TXT": [keys.key("amazon-jp", bits=2048).txt()]},
        "_dmarc.amazon.co.jp": {"TXT": ["v=DMARC1; p=quarantine; sp=reject; rua=mailto:d@amazon.co.jp"]},
        "bounces.amazon.co.jp": {"TXT": ["v=spf1 include:_spf.amazon.co.jp -all"]},
        # Amazon US: real selector name style, the corpus mail is re-signed with our key.
        "amazon.com": {"TXT": ["v=spf1 ip4:54.240.0.0/18 ~all"]},
        "bounces.amazon.com": {"TXT": ["v=spf1 ip4:54.240.0.0/18 -all"]},
        "test2024._domainkey.amazon.com": {"TXT": [keys.key("amazon-com").txt()]},
        "_dmarc.amazon.com": {"TXT": ["v=DMARC1; p=quarantine; pct=100"]},
        # The attacker owns a domain with working SPF and DKIM.
        "attacker.example": {"TXT": ["v=spf1 ip4:198.51.100.0/24 -all"]},
        "sel._domainkey.attacker.example": {"TXT": [keys.key("attacker").txt()]},
        "_dmarc.attacker.example": {"TXT": ["v=DMARC1; p=none"]},
        # A lookalike that authenticates perfectly as itself.
        "amaz0n-verify.test": {"TXT": ["v=spf1 ip4:203.0.113.96/29 -all"]},
        "k1._domainkey.amaz0n-verify.test": {"TXT": [keys.key("lookalike").txt()]},
        "_dmarc.amaz0n-verify.test": {"TXT": ["v=DMARC1; p=reject"]},
        # Mailing lists: list.example is trusted to seal ARC, shady-list.example is not.
        "list.example": {"TXT": ["v=spf1 ip4:203.0.113.0/26 -all"]},
        "arc._domainkey.list.example": {"TXT": [keys.key("list").txt()]},
        "shady-list.example": {"TXT": ["v=spf1 ip4:203.0.113.0/26 -all"]},
        "arc._domainkey.shady-list.example": {"TXT": [keys.key("shady").txt()]},
        # SPF results.
        "softfail.example": {"TXT": ["v=spf1 ip4:192.0.2.0/24 ~all"]},
        "neutral.example": {"TXT": ["v=spf1 ?all"]},
        "nospf.example": {"TXT": ["some verification token"]},
        "broken-spf.example": {"TXT": ["v=spf1 ip4:192.0.2.0/24 moo -all"]},
        "mx.helo.example": {"TXT": ["v=spf1 a -all"], "A": ["192.0.2.77"]},
        # DMARC policies.
        "none.example": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
        "_dmarc.none.example": {"TXT": ["v=DMARC1; p=none"]},
        "reject.example": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
        "_dmarc.reject.example": {"TXT": ["v=DMARC1; p=reject"]},
        "nodmarc.example": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
        "pct.example": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
        "_dmarc.pct.example": {"TXT": ["v=DMARC1; p=quarantine; pct=50"]},
        "_dmarc.multi.example": {"TXT": ["v=DMARC1; p=none", "v=DMARC1; p=reject"]},
        "_dmarc.badpolicy.example": {"TXT": ["v=DMARC1; p=maybe"]},
        "_dmarc.badpolicy-rua.example": {"TXT": ["v=DMARC1; p=maybe; rua=mailto:r@badpolicy-rua.example"]},
        # Alignment: the signer is a subdomain of the From domain.
        "_dmarc.strict.example": {"TXT": ["v=DMARC1; p=reject; adkim=s; aspf=s"]},
        "s1._domainkey.mail.strict.example": {"TXT": [keys.key("sub").txt()]},
        "mail.strict.example": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
        "_dmarc.relaxed.example": {"TXT": ["v=DMARC1; p=reject"]},
        "s1._domainkey.mail.relaxed.example": {"TXT": [keys.key("sub").txt()]},
        "mail.relaxed.example": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
        # A revoked key (empty p=, RFC 6376 3.6.1).
        "revoked._domainkey.reject.example": {"TXT": ["v=DKIM1; k=rsa; p="]},
    }


@pytest.fixture(scope="module")
def server(dnsmasq_module_factory: DnsmasqFactory, dkim_keyring: KeyRing) -> DnsmasqServer:
    return dnsmasq_module_factory(zones(dkim_keyring))


@pytest.fixture
def client(server: DnsmasqServer) -> DnsClient:
    return DnsClient(nameservers=("127.0.0.1",), port=server.port, query_timeout=2.0)


def message(from_header: str, *, subject: str = "Your one-time password", body: str = "Code: 482913\n") -> bytes:
    return crlf((
        f"From: {from_header}\n"
        "To: user@example.org\n"
        f"Subject: {subject}\n"
        "Date: Tue, 14 May 2024 09:12:45 +0000\n"
        "Message-ID: <test-1@example.org>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "\n" + body).encode())


def run(raw: bytes, envelope: Envelope, client: DnsClient, cfg: AuthConfig = TRUSTED) -> AuthSummary:
    return verify(raw, envelope, dns=client, cfg=cfg, budget_seconds=5.0)


def env(ip: str | None, mail_from: str, helo: str = "mail.example.net") -> Envelope:
    return Envelope(client_ip=ip, helo=helo, mail_from=mail_from)


# -- genuine and forged Amazon mail ------------------------------------------------------------

def test_genuine_amazon_co_jp_passes_dkim_and_dmarc_aligned(client: DnsClient, dkim_keyring: KeyRing) -> None:
    raw = dkim_sign((FIXTURES / "amazon_co_jp_otp.eml").read_bytes(), domain="amazon.co.jp", selector="sel",
                    key=dkim_keyring.key("amazon-jp", bits=2048))
    s = run(raw, env(AMAZON_IP, "0106018f-bounce@bounces.amazon.co.jp", "e25.amazonses.example"), client)
    assert s.source == "local"
    assert s.dkim == (DkimResult(domain="amazon.co.jp", selector="sel", result="pass"),)
    assert (s.spf, s.spf_domain) == ("pass", "bounces.amazon.co.jp")
    assert s.dmarc == "pass"
    assert s.dmarc_aligned == "dkim:amazon.co.jp"
    assert s.dmarc_policy == "quarantine"
    assert s.from_domain == "amazon.co.jp"


def test_real_corpus_amazon_com_mail_checks_every_signature(client: DnsClient, dkim_keyring: KeyRing) -> None:
    corpus_mail = CORPUS / "legit" / "009.eml"
    require("corpus", corpus_mail.is_file(), f"{corpus_mail} missing (shared/ beside the repo)")
    raw = dkim_sign(corpus_mail.read_bytes(), domain="amazon.com", selector="test2024",
                    key=dkim_keyring.key("amazon-com"))
    s = run(raw, env(AMAZON_COM_IP, "2023102321@bounces.amazon.com", "a13-167.smtp-out.amazonses.com"), client)
    # Ours verifies; Amazon's real signatures have no key in the test DNS (RFC 6376 6.1.2: no key
    # is a permanent error), and the real ARC seal of messagingengine.com cannot verify either.
    assert [(k.domain, k.result) for k in s.dkim] == [
        ("amazon.com", "pass"), ("amazon.com", "permerror"), ("amazonses.com", "permerror")]
    assert s.arc == "fail"
    assert (s.dmarc, s.dmarc_aligned, s.from_domain) == ("pass", "dkim:amazon.com", "amazon.com")
    assert s.spf == "pass"


def test_amazon_from_signed_with_attacker_key_under_amazon_selector_fails(
        client: DnsClient, dkim_keyring: KeyRing) -> None:
    raw = dkim_sign(message('"Amazon.co.jp" <account-update@amazon.co.jp>'), domain="amazon.co.jp",
                    selector="sel", key=dkim_keyring.key("attacker"))
    s = run(raw, env(ATTACKER_IP, "account-update@amazon.co.jp"), client)
    assert s.dkim == (DkimResult(domain="amazon.co.jp", selector="sel", result="fail"),)
    assert s.spf == "fail"
    assert (s.dmarc, s.dmarc_aligned, s.dmarc_policy) == ("fail", None, "quarantine")


def test_amazon_from_signed_under_selector_not_in_dns_has_no_key(client: DnsClient, dkim_keyring: KeyRing) -> None:
    raw = dkim_sign(message("<account-update@amazon.co.jp>"), domain="amazon.co.jp", selector="evil",
                    key=dkim_keyring.key("attacker"))
    s = run(raw, env(ATTACKER_IP, "bounce@attacker.example"), client)
    assert s.dkim == (DkimResult(domain="amazon.co.jp", selector="evil", result="permerror"),)
    assert (s.spf, s.spf_domain) == ("pass", "attacker.example")
    assert s.dmarc == "fail"


def test_attacker_signing_as_itself_is_not_aligned_with_amazon(client: DnsClient, dkim_keyring: KeyRing) -> None:
    raw = dkim_sign(message("Amazon <account-update@amazon.co.jp>"), domain="attacker.example", selector="sel",
                    key=dkim_keyring.key("attacker"))
    s = run(raw, env(ATTACKER_IP, "bounce@attacker.example"), client)
    assert s.dkim == (DkimResult(domain="attacker.example", selector="sel", result="pass"),)
    assert s.spf == "pass"
    assert (s.dmarc, s.dmarc_aligned) == ("fail", None)


def test_lookalike_domain_passes_dmarc_for_itself(client: DnsClient, dkim_keyring: KeyRing) -> None:
    raw = dkim_sign(message('"Amazon Security" <security@amaz0n-verify.test>'), domain="amaz0n-verify.test",
                    selector="k1", key=dkim_keyring.key("lookalike"))
    s = run(raw, env(LOOKALIKE_IP, "security@amaz0n-verify.test"), client)
    assert (s.spf, s.dmarc, s.dmarc_policy) == ("pass", "pass", "reject")
    assert s.from_domain == "amaz0n-verify.test"
    assert s.dmarc_aligned == "dkim:amaz0n-verify.test"


def test_tampered_body_fails_the_signature(client: DnsClient, dkim_keyring: KeyRing) -> None:
    raw = dkim_sign(message("<account-update@amazon.co.jp>"), domain="amazon.co.jp", selector="sel",
                    key=dkim_keyring.key("amazon-jp", bits=2048))
    s = run(raw.replace(b"482913", b"999999"), env(None, "x@amazon.co.jp"), client)
    assert s.dkim[0].result == "fail"
    assert s.dmarc == "fail"


def test_every_signature_is_reported_and_unparsable_ones_are_permerror(
        client: DnsClient, dkim_keyring: KeyRing) -> None:
    raw = dkim_sign(message("<account-update@amazon.co.jp>"), domain="amazon.co.jp", selector="sel",
                    key=dkim_keyring.key("amazon-jp", bits=2048))
    raw = dkim_sign(raw, domain="attacker.example", selector="sel", key=dkim_keyring.key("attacker"))
    raw = b"DKIM-Signature: this is not a tag list at all\r\n" + raw
    raw = b"DKIM-Signature: v=1; a=rsa-sha256; d=amazon.co.jp; s=sel; h=to:subject; bh=AAAA; b=AAAA\r\n" + raw
    raw = b"DKIM-Signature: v=1; a=rsa-sha256; d=reject.example; s=revoked; h=from; bh=AAAA; b=AAAA\r\n" + raw
    s = run(raw, env(None, "x@amazon.co.jp"), client)
    assert [(k.domain, k.selector, k.result) for k in s.dkim] == [
        ("reject.example", "revoked", "permerror"),  # revoked key
        ("amazon.co.jp", "sel", "permerror"),  # From not signed (RFC 6376 6.1.1)
        ("", "", "permerror"),  # unparsable
        ("attacker.example", "sel", "pass"),
        ("amazon.co.jp", "sel", "pass"),
    ]
    assert (s.dmarc, s.dmarc_aligned) == ("pass", "dkim:amazon.co.jp")


# -- SPF ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("ip", "mail_from", "expected"), [
    ("192.0.2.10", "a@amazon.co.jp", "pass"),  # mx mechanism
    ("192.0.2.20", "a@amazon.co.jp", "pass"),  # include
    ("192.0.2.99", "a@amazon.co.jp", "fail"),
    ("192.0.2.99", "a@softfail.example", "pass"),
    ("198.51.100.1", "a@softfail.example", "softfail"),
    ("198.51.100.1", "a@neutral.example", "neutral"),
    ("198.51.100.1", "a@nospf.example", "none"),
    ("198.51.100.1", "a@no-such-domain.example", "none"),
    ("198.51.100.1", "a@broken-spf.example", "permerror"),
])
def test_spf_results(client: DnsClient, ip: str, mail_from: str, expected: str) -> None:
    with client.budget(5.0):
        result, domain = check_spf(env(ip, mail_from), client)
    assert result == expected
    assert domain == mail_from.split("@")[1]


def test_spf_never_uses_pyspf_module_dns(client: DnsClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import spf  # type: ignore[import-untyped]

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("pyspf's global resolver was used")

    monkeypatch.setattr(spf, "DNSLookup", forbidden)
    with client.budget(5.0):
        assert check_spf(env("192.0.2.20", "a@amazon.co.jp"), client) == ("pass", "amazon.co.jp")


def test_concurrent_messages_share_one_client(client: DnsClient, dkim_keyring: KeyRing) -> None:
    genuine = dkim_sign(message("<account-update@amazon.co.jp>"), domain="amazon.co.jp", selector="sel",
                        key=dkim_keyring.key("amazon-jp", bits=2048))
    forged = dkim_sign(message("<account-update@amazon.co.jp>"), domain="amazon.co.jp", selector="sel",
                       key=dkim_keyring.key("attacker"))
    jobs = [(genuine, AMAZON_IP, "pass"), (forged, ATTACKER_IP, "fail")] * 16
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda job: run(job[0], env(job[1], "a@amazon.co.jp"), client).dmarc, jobs))
    assert got == [expected for _, _, expected in jobs]


def test_spf_with_empty_mail_from_checks_postmaster_at_helo(client: DnsClient) -> None:
    assert check_spf(Envelope(client_ip="192.0.2.77", helo="mx.helo.example", mail_from=""),
                     client) == ("pass", "mx.helo.example")
    assert check_spf(Envelope(client_ip="192.0.2.78", helo="mx.helo.example", mail_from="<>"),
                     client) == ("fail", "mx.helo.example")
    assert check_spf(Envelope(client_ip="192.0.2.78", helo="[192.0.2.78]", mail_from=""), client) == ("none", None)


def test_spf_without_client_ip_is_none(client: DnsClient) -> None:
    s = run(message("<a@amazon.co.jp>"), Envelope(mail_from="a@amazon.co.jp"), client)
    assert (s.spf, s.spf_domain) == ("none", "amazon.co.jp")


def test_spf_aligned_pass_gives_dmarc_pass_without_dkim(client: DnsClient) -> None:
    s = run(message("<news@reject.example>"), env("192.0.2.5", "bounce@reject.example"), client)
    assert (s.spf, s.dmarc, s.dmarc_aligned, s.dmarc_policy) == ("pass", "pass", "spf:reject.example", "reject")


def test_dns_down_gives_temperror_everywhere(dnsmasq_factory: DnsmasqFactory, dkim_keyring: KeyRing,
                                             alarm: None) -> None:
    server = dnsmasq_factory(zones(dkim_keyring))
    client = DnsClient(nameservers=("127.0.0.1",), port=server.port, query_timeout=0.5)
    raw = dkim_sign(message("<a@amazon.co.jp>"), domain="amazon.co.jp", selector="sel",
                    key=dkim_keyring.key("amazon-jp", bits=2048))
    assert run(raw, env(AMAZON_IP, "a@amazon.co.jp"), client).dmarc == "pass"
    server.stop()
    client.clear_cache()
    s = verify(raw, env(AMAZON_IP, "a@amazon.co.jp"), dns=client, cfg=TRUSTED, budget_seconds=3.0)
    assert s.spf == "temperror"
    assert s.dkim == (DkimResult(domain="amazon.co.jp", selector="sel", result="temperror"),)
    # DKIM could not finish for the From domain: DMARC must not say "fail" for genuine mail.
    assert s.dmarc == "temperror"
    server.restart()
    assert run(raw, env(AMAZON_IP, "a@amazon.co.jp"), client).dmarc == "pass"


def test_black_hole_dns_returns_temperror_within_budget(black_hole: BlackHoleServer, dkim_keyring: KeyRing,
                                                        alarm: None) -> None:
    client = DnsClient(nameservers=("127.0.0.1",), port=black_hole.port, query_timeout=5.0)
    raw = dkim_sign(message("<a@amazon.co.jp>"), domain="amazon.co.jp", selector="sel",
                    key=dkim_keyring.key("amazon-jp", bits=2048))
    detail = verify_detail(raw, env(AMAZON_IP, "a@amazon.co.jp"), dns=client, cfg=TRUSTED, budget_seconds=1.0)
    s = detail.summary
    assert (s.spf, s.dmarc) == ("temperror", "temperror")
    assert s.dkim[0].result == "temperror"
    # The first query used the whole budget; every later one failed fast without being sent.
    assert client.stats().queries == 1


# -- DMARC ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("from_domain", "dmarc", "policy"), [
    ("none.example", "fail", "none"),
    ("reject.example", "fail", "reject"),
    ("nodmarc.example", "none", None),
    ("pct.example", "fail", "quarantine;pct=50"),
    ("amazon.co.jp", "fail", "quarantine"),
    # No record at the subdomain: the org domain's sp= applies (RFC 7489 6.6.3).
    ("news.amazon.co.jp", "fail", "reject"),
    ("deep.news.amazon.co.jp", "fail", "reject"),
    # sp absent: the org domain's p= applies to subdomains.
    ("sub.reject.example", "fail", "reject"),
    ("multi.example", "permerror", None),
    ("badpolicy.example", "permerror", None),
    ("badpolicy-rua.example", "fail", "none"),
])
def test_dmarc_policies_for_unauthenticated_mail(client: DnsClient, from_domain: str, dmarc: str,
                                                 policy: str | None) -> None:
    s = run(message(f"<someone@{from_domain}>"), env(ATTACKER_IP, "bounce@attacker.example"), client)
    assert (s.from_domain, s.dmarc, s.dmarc_policy, s.dmarc_aligned) == (from_domain, dmarc, policy, None)


def test_dmarc_subdomain_passes_with_org_signature_under_relaxed_alignment(
        client: DnsClient, dkim_keyring: KeyRing) -> None:
    raw = dkim_sign(message("<info@news.amazon.co.jp>"), domain="amazon.co.jp", selector="sel",
                    key=dkim_keyring.key("amazon-jp", bits=2048))
    s = run(raw, env(ATTACKER_IP, "bounce@attacker.example"), client)
    assert (s.dmarc, s.dmarc_aligned, s.dmarc_policy) == ("pass", "dkim:amazon.co.jp", "reject")


@pytest.mark.parametrize(("org", "dmarc"), [("relaxed.example", "pass"), ("strict.example", "fail")])
def test_dkim_alignment_relaxed_versus_strict(client: DnsClient, dkim_keyring: KeyRing, org: str,
                                              dmarc: str) -> None:
    raw = dkim_sign(message(f"<info@{org}>"), domain=f"mail.{org}", selector="s1", key=dkim_keyring.key("sub"))
    s = run(raw, env(ATTACKER_IP, "bounce@attacker.example"), client)
    assert s.dkim[0].result == "pass"
    assert s.dmarc == dmarc
    assert s.dmarc_aligned == (f"dkim:mail.{org}" if dmarc == "pass" else None)


@pytest.mark.parametrize(("org", "dmarc"), [("relaxed.example", "pass"), ("strict.example", "fail")])
def test_spf_alignment_relaxed_versus_strict(client: DnsClient, org: str, dmarc: str) -> None:
    s = run(message(f"<info@{org}>"), env("192.0.2.5", f"bounce@mail.{org}"), client)
    assert (s.spf, s.dmarc) == ("pass", dmarc)


def test_multiple_from_addresses_is_dmarc_permerror(client: DnsClient, dkim_keyring: KeyRing) -> None:
    raw = dkim_sign(message("<a@amazon.co.jp>, <b@attacker.example>"), domain="attacker.example",
                    selector="sel", key=dkim_keyring.key("attacker"))
    s = run(raw, env(ATTACKER_IP, "bounce@attacker.example"), client)
    assert (s.dmarc, s.from_domain) == ("permerror", None)
    twice = crlf(b"From: <a@amazon.co.jp>\nFrom: <b@attacker.example>\nSubject: x\n\nbody\n")
    assert run(twice, env(ATTACKER_IP, "bounce@attacker.example"), client).dmarc == "permerror"
    none = crlf(b"Subject: no author\n\nbody\n")
    assert run(none, env(ATTACKER_IP, "bounce@attacker.example"), client).dmarc == "permerror"


def test_parse_dmarc_and_evaluate_without_record() -> None:
    assert parse_dmarc("v=DMARC1; p=reject; adkim=s") == {"p": "reject", "adkim": "s"}
    assert parse_dmarc("v=spf1 -all") is None
    assert parse_dmarc("p=reject; v=DMARC1") is None  # RFC 7489 6.4: v= must come first
    assert evaluate_dmarc("x.example", None, "pass", "x.example", ()) == ("none", None)


def test_unfinished_aligned_dkim_is_dmarc_temperror_not_fail() -> None:
    record = DmarcRecord(domain="amazon.co.jp", p="quarantine")
    timed_out = (DkimResult(domain="amazon.co.jp", selector="sel", result="temperror"),)
    assert evaluate_dmarc("amazon.co.jp", record, "fail", "attacker.example", timed_out) == ("temperror", None)
    unrelated = (DkimResult(domain="attacker.example", selector="sel", result="temperror"),)
    assert evaluate_dmarc("amazon.co.jp", record, "fail", "attacker.example", unrelated) == ("fail", None)
    assert evaluate_dmarc("amazon.co.jp", record, "temperror", "bounces.amazon.co.jp", ()) == ("temperror", None)


# -- ARC ------------------------------------------------------------------------------------

def forwarded(keys: KeyRing, *, sealer: str, sealer_key: str, upstream_results: str,
              original_signer: str = "amazon.co.jp") -> bytes:
    """Amazon mail through a mailing list that verified it, tagged the subject and added a footer."""
    raw = dkim_sign(message("Amazon.co.jp <account-update@amazon.co.jp>", subject="Sign-in code"),
                    domain=original_signer, selector="sel", key=keys.key("amazon-jp", bits=2048))
    raw = add_header(raw, "Authentication-Results", f"{sealer}; {upstream_results}")
    raw = raw.replace(b"Subject: Sign-in code", b"Subject: [users] Sign-in code") + b"-- \r\nlist footer\r\n"
    return arc_seal(raw, domain=sealer, selector="arc", key=keys.key(sealer_key), srv_id=sealer)


LIST_ENV = Envelope(client_ip=LIST_IP, helo="mail.list.example", mail_from="users-bounces@list.example")
ORIGINAL_PASS = "spf=pass smtp.mailfrom=bounces.amazon.co.jp; dkim=pass header.d=amazon.co.jp header.s=sel; " \
                "dmarc=pass header.from=amazon.co.jp"


def test_trusted_arc_seal_keeps_the_original_dmarc_pass(client: DnsClient, dkim_keyring: KeyRing) -> None:
    raw = forwarded(dkim_keyring, sealer="list.example", sealer_key="list", upstream_results=ORIGINAL_PASS)
    detail = verify_detail(raw, LIST_ENV, dns=client, cfg=TRUSTED, budget_seconds=5.0)
    assert detail.local.dmarc == "fail"  # the list broke Amazon's signature
    assert detail.local.dkim[0].result == "fail"
    s = detail.summary
    assert (s.arc, s.source, s.dmarc, s.dmarc_aligned) == ("pass", "arc:list.example", "pass", "dkim:amazon.co.jp")
    assert s.from_domain == "amazon.co.jp"
    assert detail.arc_sealer == "list.example"


def test_untrusted_arc_sealer_is_not_believed(client: DnsClient, dkim_keyring: KeyRing) -> None:
    raw = forwarded(dkim_keyring, sealer="shady-list.example", sealer_key="shady", upstream_results=ORIGINAL_PASS)
    detail = verify_detail(raw, LIST_ENV, dns=client, cfg=TRUSTED, budget_seconds=5.0)
    s = detail.summary
    assert (s.arc, s.source, s.dmarc, s.dmarc_aligned) == ("pass", "local", "fail", None)
    assert detail.arc_sealer == "shady-list.example"


def test_trusted_sealer_whose_results_show_no_pass_changes_nothing(client: DnsClient, dkim_keyring: KeyRing) -> None:
    raw = forwarded(dkim_keyring, sealer="list.example", sealer_key="list",
                    upstream_results="dkim=fail header.d=amazon.co.jp; dmarc=fail header.from=amazon.co.jp")
    s = run(raw, LIST_ENV, client)
    assert (s.arc, s.source, s.dmarc) == ("pass", "local", "fail")


def test_broken_arc_chain_is_not_believed(client: DnsClient, dkim_keyring: KeyRing) -> None:
    raw = forwarded(dkim_keyring, sealer="list.example", sealer_key="list", upstream_results=ORIGINAL_PASS)
    s = run(raw.replace(b"list footer", b"changed after sealing"), LIST_ENV, client)
    assert (s.arc, s.source, s.dmarc) == ("fail", "local", "fail")


def test_trusted_newest_sealer_over_untrusted_first_hop_is_not_believed(
        client: DnsClient, dkim_keyring: KeyRing) -> None:
    raw = forwarded(dkim_keyring, sealer="shady-list.example", sealer_key="shady", upstream_results=ORIGINAL_PASS)
    raw = add_header(raw, "Authentication-Results", "list.example; arc=pass header.oldest-pass=0")
    raw = arc_seal(raw, domain="list.example", selector="arc", key=dkim_keyring.key("list"), srv_id="list.example")
    detail = verify_detail(raw, LIST_ENV, dns=client, cfg=TRUSTED, budget_seconds=5.0)
    assert (detail.summary.arc, detail.arc_sealer, detail.arc_first_sealer) == (
        "pass", "list.example", "shady-list.example")
    assert (detail.summary.source, detail.summary.dmarc) == ("local", "fail")
    both = AuthConfig(trusted_arc_sealers=("list.example", "shady-list.example"))
    assert run(raw, LIST_ENV, client, both).source == "arc:list.example"


# -- robustness -----------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    b"",
    b"\x00\xff\xfe garbage without headers",
    b"From: \r\n\r\n",
    b"DKIM-Signature: v=1; d=\xff\xfe; s=\x00\r\nFrom: a@amazon.co.jp\r\n\r\nx",
    b"ARC-Seal: i=1; cv=none; d=list.example; s=arc; b=!!\r\nFrom: a@amazon.co.jp\r\n\r\nx",
    b"From: =?utf-8?b?////?= <a@[127.0.0.1]>\r\n\r\n",
    b"From: a@\xe3\x82\xa2\xe3\x83\x9e\xe3\x82\xbe\xe3\x83\xb3.example\r\n\r\n",
])
def test_hostile_input_never_raises(client: DnsClient, raw: bytes) -> None:
    s = run(raw, env(ATTACKER_IP, "bounce@attacker.example"), client)
    assert s.source == "local"
    assert s.dmarc in ("none", "fail", "permerror", "temperror")


def test_dns_budget_covers_the_whole_message(black_hole: BlackHoleServer, alarm: None) -> None:
    client = DnsClient(nameservers=("127.0.0.1",), port=black_hole.port, query_timeout=0.3)
    seen: list[str] = []
    client.on_query = lambda seconds, outcome: seen.append(outcome)
    s = verify(message("<a@amazon.co.jp>"), env(AMAZON_IP, "a@amazon.co.jp"), dns=client, cfg=TRUSTED,
               budget_seconds=0.7)
    assert s.spf == "temperror"
    # 0.3 s per query inside a 0.7 s budget: at most three queries ever left this host.
    assert 1 <= len(seen) <= 3
    assert set(seen) == {"timeout"}

