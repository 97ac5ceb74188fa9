"""Authentication-Results: trusted upstream results, our own header, forged own authserv-id."""
from __future__ import annotations

import email
import email.policy

import authres  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otpguard.auth.authresults import (
    aar_vouches,
    aligned,
    is_own_authserv_id,
    organizational_domain,
    below_boundary,
    own_results_header,
    summary_from_headers,
    upstream_results,
)
from otpguard.core.model import AuthSummary, DkimResult
from support.dnsserver import require

from conftest import CORPUS  # noqa: E402


def corpus_headers(name: str) -> list[tuple[str, str]]:
    path = CORPUS / name
    require("corpus", path.is_file(), f"{path} missing (shared/ beside the repo)")
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
    return [(k, str(v)) for k, v in msg.items()]


# -- organizational domain and alignment ----------------------------------------------------

@pytest.mark.parametrize(("name", "org"), [
    ("amazon.co.jp", "amazon.co.jp"),
    ("gc.email.amazon.co.jp", "amazon.co.jp"),
    ("amazon.com.be", "amazon.com.be"),  # com.be is a public suffix
    ("Email.Amazon.COM.", "amazon.com"),
    ("x.amaz0n-verify.test", "amaz0n-verify.test"),  # unlisted TLD: default rule "*"
    ("co.jp", "co.jp"),
    ("", ""),
])
def test_organizational_domain(name: str, org: str) -> None:
    assert organizational_domain(name) == org


def test_alignment() -> None:
    assert aligned("mail.amazon.co.jp", "amazon.co.jp")
    assert not aligned("mail.amazon.co.jp", "amazon.co.jp", strict=True)
    assert aligned("amazon.co.jp", "AMAZON.co.jp.", strict=True)
    assert not aligned("amazon.co.jp.evil.example", "amazon.co.jp")
    assert not aligned("amazon.com", "amazon.co.jp")
    assert not aligned("", "amazon.co.jp")
    # com.be is a public suffix: another com.be customer is not Amazon Belgium.
    assert not aligned("evil.com.be", "amazon.com.be")
    assert aligned("email.amazon.com.be", "amazon.com.be")


# -- upstream results -----------------------------------------------------------------------

def test_google_results_from_the_corpus() -> None:
    s = summary_from_headers(corpus_headers("legit/010.eml"), ("mx.google.com",), "amazon.com")
    assert s is not None
    assert s.source == "upstream:mx.google.com"
    assert (s.spf, s.spf_domain) == ("pass", "bounces.amazon.com")
    assert [(k.domain, k.result) for k in s.dkim] == [("amazon.com", "pass"), ("amazonses.com", "pass")]
    assert (s.dmarc, s.from_domain, s.dmarc_aligned) == ("pass", "amazon.com", "dkim:amazon.com")


def test_fastmail_results_split_over_several_headers_are_merged() -> None:
    s = summary_from_headers(corpus_headers("legit/009.eml"), ("MX1.MessagingEngine.com",), None)
    assert s is not None
    assert s.source == "upstream:mx1.messagingengine.com"
    assert (s.spf, s.arc, s.dmarc, s.dmarc_policy) == ("pass", "none", "pass", "quarantine")
    assert s.from_domain == "amazon.com"  # from the dmarc header.from when the caller has none
    assert s.dmarc_aligned == "dkim:amazon.com"


def test_untrusted_ids_are_ignored() -> None:
    assert summary_from_headers(corpus_headers("legit/010.eml"), ("mx.example.org",), "amazon.com") is None
    assert summary_from_headers(corpus_headers("legit/010.eml"), (), "amazon.com") is None


def test_topmost_trusted_header_wins() -> None:
    headers = [
        ("Received", "from relay by mx.example.org"),
        ("Authentication-Results", "mx.example.org; dmarc=fail header.from=amazon.co.jp; spf=fail"),
        ("Authentication-Results", "edge.example.org; dmarc=pass header.from=amazon.co.jp"),
        ("authentication-results", "mx.example.org; dkim=pass header.d=amazon.co.jp header.s=sel"),
    ]
    s = summary_from_headers(headers, ("edge.example.org", "MX.example.org"), "amazon.co.jp")
    assert s is not None
    assert s.source == "upstream:mx.example.org"
    assert (s.dmarc, s.spf, s.dmarc_aligned) == ("fail", "fail", None)
    assert s.dkim == (DkimResult(domain="amazon.co.jp", selector="sel", result="pass"),)


def test_garbage_headers_are_skipped() -> None:
    headers = [
        ("Authentication-Results", ""),
        ("Authentication-Results", "mx.example.org"),
        ("Authentication-Results", "mx.example.org; (unclosed comment dkim=pass"),
        ("Authentication-Results", "mx.example.org; dkim=pass header.d=" + "a" * 20000),
        ("Authentication-Results", "\x00\xff;;;==="),
        ("Authentication-Results", "mx.example.org; spf=pass smtp.mailfrom=amazon.co.jp;\r\n\tdmarc=pass"
                                   " header.from=amazon.co.jp"),
    ]
    s = summary_from_headers(headers, ("mx.example.org",), "amazon.co.jp")
    assert s is not None
    assert (s.spf, s.dmarc, s.dmarc_aligned) == ("pass", "pass", "spf:amazon.co.jp")


def test_upstream_pass_for_another_from_says_nothing_here() -> None:
    headers = [("Authentication-Results", "mx.example.org; dmarc=pass header.from=attacker.example")]
    s = summary_from_headers(headers, ("mx.example.org",), "amazon.co.jp")
    assert s is not None
    assert (s.dmarc, s.from_domain, s.dmarc_aligned) == ("none", "amazon.co.jp", None)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["Authentication-Results", "X"]), st.text(max_size=200)), max_size=5))
def test_summary_never_raises(headers: list[tuple[str, str]]) -> None:
    summary_from_headers(headers, ("mx.example.org",), None)


# -- the trust boundary -------------------------------------------------------------------------

BORDER_PASS = "mx.example.org; dkim=pass header.d=amazon.co.jp; dmarc=pass header.from=amazon.co.jp"


def test_results_above_the_topmost_received_are_believed() -> None:
    # What the milter sees when the border (a Postfix whose milter inserted its results at the
    # top) hands the mail over: the border's results above the border's own Received field.
    headers = [("Authentication-Results", BORDER_PASS), ("Received", "from a1.amazonses.com by mx.example.org"),
               ("From", "account-update@amazon.co.jp")]
    up = upstream_results(headers, ("mx.example.org",), "amazon.co.jp", trusted_hops=0)
    assert up.forged == () and up.summary is not None and up.summary.dmarc == "pass"


def test_results_below_a_received_field_are_forged_and_not_believed() -> None:
    headers = [("Received", "from mail.attacker.example by mx.example.org"),
               ("Authentication-Results", "(forged) MX.Example.ORG; " + BORDER_PASS.split("; ", 1)[1])]
    up = upstream_results(headers, ("mx.example.org",), "amazon.co.jp", trusted_hops=0)
    assert up.summary is None and up.forged == ("mx.example.org",)
    assert below_boundary(headers, ("mx.example.org",), 0) == [1]
    # With one trusted relay between the border and us, one Received field is allowed above.
    one_hop = upstream_results(headers, ("mx.example.org",), "amazon.co.jp", trusted_hops=1)
    assert one_hop.forged == () and one_hop.summary is not None and one_hop.summary.dmarc == "pass"


def test_a_forged_copy_below_never_outvotes_the_real_results_above() -> None:
    headers = [("Authentication-Results", "mx.example.org; dmarc=fail header.from=amazon.co.jp"),
               ("Received", "from mail.attacker.example by mx.example.org"),
               ("Authentication-Results", BORDER_PASS),
               ("Authentication-Results", "untrusted.example; dmarc=pass header.from=amazon.co.jp")]
    up = upstream_results(headers, ("mx.example.org",), "amazon.co.jp", trusted_hops=0)
    assert up.summary is not None and up.summary.dmarc == "fail" and up.forged == ("mx.example.org",)
    # Untrusted ids are neither believed nor forgeries of ours: they are someone else's words.
    assert below_boundary(headers, ("mx.example.org",), 0) == [2]


def test_no_boundary_keeps_reading_saved_mail_as_before() -> None:
    # legit/010 as saved from Gmail: its results sit below two Received fields of its own.
    headers = corpus_headers("legit/010.eml")
    assert summary_from_headers(headers, ("mx.google.com",), "amazon.com") is not None
    assert summary_from_headers(headers, ("mx.google.com",), "amazon.com", trusted_hops=1) is None
    assert summary_from_headers(headers, ("mx.google.com",), "amazon.com", trusted_hops=2) is not None
    assert upstream_results(headers, ("mx.google.com",), "amazon.com", trusted_hops=1).forged == ("mx.google.com",)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["Authentication-Results", "Received", "X"]),
                          st.sampled_from(["mx.example.org; spf=pass", "from x by y", "(c) mx.example.org;", "",
                                           "\"mx.example.org\"; dkim=pass"])), max_size=8),
       st.integers(min_value=0, max_value=3))
def test_every_trusted_field_is_believed_or_forged_never_both(headers: list[tuple[str, str]], hops: int) -> None:
    forged = set(below_boundary(headers, ("mx.example.org",), hops))
    received = 0
    for i, (name, value) in enumerate(headers):
        if name == "Received":
            received += 1
        elif name == "Authentication-Results" and value.strip(" (c)\"").startswith("mx.example.org"):
            assert (i in forged) == (received > hops)
        else:
            assert i not in forged


# -- ARC-Authentication-Results ---------------------------------------------------------------

def test_aar_of_the_corpus_vouches_for_amazon() -> None:
    aar = dict(corpus_headers("legit/010.eml"))["ARC-Authentication-Results"]
    assert aar_vouches(aar, "amazon.com") == "dkim:amazon.com"
    assert aar_vouches(aar, "amazon.co.jp") is None
    assert aar_vouches("i=1; list.example; dmarc=pass header.from=amazon.co.jp", "amazon.co.jp") == "dmarc:amazon.co.jp"
    assert aar_vouches("i=1; list.example; dkim=pass header.d=mail.amazon.co.jp", "amazon.co.jp",
                       strict_dkim=True) is None
    assert aar_vouches("garbage", "amazon.co.jp") is None


# -- our own header -------------------------------------------------------------------------

SUMMARY = AuthSummary(
    source="local", spf="pass", spf_domain="bounces.amazon.co.jp",
    dkim=(DkimResult(domain="amazon.co.jp", selector="sel", result="pass"),
          DkimResult(domain="amazonses.com", selector="x1", result="fail")),
    arc="none", dmarc="pass", dmarc_policy="quarantine", from_domain="amazon.co.jp",
    dmarc_aligned="dkim:amazon.co.jp")


def test_own_header_round_trips_through_authres() -> None:
    value = own_results_header(SUMMARY, "otpguard")
    parsed = authres.all_features().parse_value(value)
    assert parsed.authserv_id == "otpguard"
    assert [(r.method, r.result) for r in parsed.results] == [
        ("spf", "pass"), ("dkim", "pass"), ("dkim", "fail"), ("dmarc", "pass"), ("arc", "none")]
    back = summary_from_headers([("Authentication-Results", value)], ("otpguard",), None)
    assert back is not None
    assert back.dkim == SUMMARY.dkim
    assert (back.spf, back.spf_domain, back.dmarc, back.dmarc_policy, back.from_domain, back.dmarc_aligned) == (
        "pass", "bounces.amazon.co.jp", "pass", "quarantine", "amazon.co.jp", "dkim:amazon.co.jp")


def test_own_header_is_one_ascii_line_and_names_its_source() -> None:
    odd = AuthSummary(source="arc:list.example", spf="none", dkim=(), dmarc="pass",
                      dmarc_policy="quarantine;pct=50", from_domain="アマゾン.example\r\nX-Evil: 1",
                      dmarc_aligned="dkim:amazon.co.jp")
    value = own_results_header(odd, "otpguard")
    assert value.isascii() and "\r" not in value and "\n" not in value
    assert value.startswith("otpguard (via arc:list.example); ")
    assert "dkim=none" in value and "(pct=50)" in value and "policy.dmarc=quarantine" in value
    assert authres.all_features().parse_value(value).authserv_id == "otpguard"


@settings(max_examples=300, deadline=None)
@given(domain=st.text(max_size=40), selector=st.text(max_size=20), from_domain=st.text(max_size=40),
       policy=st.text(max_size=30), source=st.text(max_size=30))
def test_own_header_cannot_be_injected_into(domain: str, selector: str, from_domain: str, policy: str,
                                            source: str) -> None:
    summary = AuthSummary(source=source or "local", spf="pass", spf_domain=domain,
                          dkim=(DkimResult(domain=domain, selector=selector, result="fail"),),
                          dmarc="fail", dmarc_policy=policy, from_domain=from_domain)
    value = own_results_header(summary, "otpguard")
    assert value.isascii() and "\r" not in value and "\n" not in value
    parsed = authres.all_features().parse_value(value)
    assert parsed.authserv_id == "otpguard"
    assert [(r.method, r.result) for r in parsed.results] == [
        ("spf", "pass"), ("dkim", "fail"), ("dmarc", "fail"), ("arc", "none")]


# -- forged own authserv-id -----------------------------------------------------------------

@pytest.mark.parametrize(("value", "ours"), [
    ("otpguard; dmarc=pass header.from=amazon.co.jp", True),
    ("OTPGuard; none", True),
    ("  otpguard 1; spf=pass", True),
    ("(forged by a phisher) otpguard;dkim=pass", True),
    ("(nested (comment)) \r\n\totpguard ; dkim=pass", True),
    ('"otpguard"; dkim=pass', True),
    ("otpguard", True),
    ("otpguard.example.com; dkim=pass", False),
    ("mx.google.com; dmarc=pass", False),
    ("x-otpguard; dmarc=pass", False),
    ("", False),
    (";;;", False),
    ("(unclosed comment otpguard", False),
    ("\x00\xff", False),
])
def test_is_own_authserv_id(value: str, ours: bool) -> None:
    assert is_own_authserv_id(value, "otpguard") is ours


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_is_own_authserv_id_never_raises(value: str) -> None:
    assert isinstance(is_own_authserv_id(value, "otpguard"), bool)
    assert is_own_authserv_id("otpguard;" + value, "otpguard")
