"""Policy as data: which actions each verdict gets, their header values, and the banner body."""
from __future__ import annotations

import base64
import dataclasses
import email.parser
import email.policy
import quopri
from pathlib import Path

import pytest

from otpguard.mta.actions import (AddHeader, Banner, ChangeSubject, Monitor, Quarantine, Reject,
                              RemoveForgedHeaders, banner_body, describe, error_plan, forged_fields, plan)
from otpguard.ops.bursts import BurstNotice
from otpguard.config import ActionsConfig, load_config
from otpguard.mta.headers import BURST, SYMBOLS, VERDICT
from otpguard.core.model import Decision, Level, ScoredHit

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = load_config(ROOT / "conf" / "otpguard.toml").actions


def decision(level: Level = Level.PHISH, score: float = 12.5, **kw) -> Decision:
    hits = kw.pop("hits", (ScoredHit(symbol="LOOKALIKE_FROM_DOMAIN", score=6.0,
                                     reason="lookalike: amaz0n-jp.com ~ amazon.co.jp"),
                           ScoredHit(symbol="OTP_LURE", score=6.5, reason="subject: 'verify your code'")))
    return Decision(level=level, score=score, hits=hits, **kw)


def cfg(**changes) -> ActionsConfig:
    return dataclasses.replace(SHIPPED, **changes)


def headers(actions) -> dict[str, str]:
    return {a.name: a.value for a in actions if isinstance(a, AddHeader)}


def test_shipped_defaults_follow_the_issue() -> None:
    assert SHIPPED.by_level["suspicious"] == ("tag", "subject")
    assert SHIPPED.by_level["phish"] == ("tag", "quarantine")
    assert SHIPPED.by_level["genuine"] == ()
    assert not SHIPPED.monitor


def test_phish_is_tagged_and_quarantined() -> None:
    acts = plan(decision(), SHIPPED, "Verify your account", authserv_id="otpguard")
    assert acts[0] == RemoveForgedHeaders(authserv_id="otpguard")
    assert headers(acts)[VERDICT] == "phish; score=12.5"
    symbols = headers(acts)[SYMBOLS]
    assert symbols.replace("\n", "") == ("LOOKALIKE_FROM_DOMAIN(6) [lookalike: amaz0n-jp.com ~ amazon.co.jp]; "
                                         "OTP_LURE(6.5) [subject: 'verify your code']")
    assert acts[-1] == Quarantine(reason="otpguard: phish score=12.5")
    assert not any(isinstance(a, ChangeSubject) for a in acts)
    assert describe(acts) == "tag+quarantine"


def test_suspicious_gets_tag_and_subject_prefix() -> None:
    acts = plan(decision(Level.SUSPICIOUS, 6.0), SHIPPED, "Your order")
    assert ChangeSubject(value="[SUSPICIOUS] Your order") in acts
    assert headers(acts)[VERDICT] == "suspicious; score=6"
    assert not any(isinstance(a, Quarantine) for a in acts)
    assert describe(acts) == "tag+subject"


def test_missing_subject_is_added() -> None:
    acts = plan(decision(Level.SUSPICIOUS, 6.0), SHIPPED, None)
    assert ChangeSubject(value="[SUSPICIOUS]", add=True) in acts


def test_clean_changes_nothing_but_still_strips_forgeries() -> None:
    acts = plan(decision(Level.CLEAN, 0.0, hits=()), SHIPPED, "Hello", authserv_id="otpguard")
    assert acts == (RemoveForgedHeaders(authserv_id="otpguard"),)
    assert describe(acts) == "none"


def test_genuine_uses_its_own_actions() -> None:
    genuine = decision(Level.CLEAN, 0.0, genuine=True, hits=())
    assert plan(genuine, SHIPPED, "Your code") == (RemoveForgedHeaders(),)
    tagged = plan(genuine, cfg(by_level={**SHIPPED.by_level, "genuine": ("tag",)}), "Your code")
    assert headers(tagged)[VERDICT] == "clean; score=0; genuine=yes"
    # genuine wins over the score level: a genuine mail is never quarantined by its level.
    phishy_genuine = decision(Level.PHISH, 12.0, genuine=True)
    assert not any(isinstance(a, Quarantine) for a in plan(phishy_genuine, SHIPPED, "x"))


def test_monitor_mode_applies_nothing_but_header_hygiene() -> None:
    acts = plan(decision(), cfg(monitor=True), "Verify", auth_results="otpguard; spf=pass", authserv_id="otpguard")
    # Forged verdicts and own-id results are removed in monitor mode too: hygiene is not an action.
    assert acts == (RemoveForgedHeaders(authserv_id="otpguard"), Monitor(would=("tag", "quarantine")))
    assert describe(acts) == "monitor"


def test_header_hygiene_is_its_own_switch() -> None:
    off = cfg(header_hygiene=False)
    assert not any(isinstance(a, RemoveForgedHeaders) for a in plan(decision(), off, "x", authserv_id="otpguard"))
    assert plan(decision(), dataclasses.replace(off, monitor=True), "x") == (Monitor(would=("tag", "quarantine")),)
    # The configured hygiene (forged trusted results included) is what the plan carries.
    wide = RemoveForgedHeaders(authserv_id="otpguard", trusted_ids=("mx.border.example",), trusted_hops=0)
    assert plan(decision(), cfg(monitor=True), "x", hygiene=wide)[0] == wide
    assert plan(decision(), SHIPPED, "x", hygiene=wide)[0] == wide


def test_reject_is_the_only_action_and_escapes_percent() -> None:
    c = cfg(by_level={**SHIPPED.by_level, "phish": ("tag", "reject")},
            reject_text="5.7.1 Looks like 100% phishing\r\n(otpguard)")
    acts = plan(decision(), c, "x")
    assert acts == (Reject(code="550", xcode="5.7.1", text="Looks like 100%% phishing\\x0d\\x0a(otpguard)"),)
    assert describe(acts) == "reject"


def test_quarantine_implies_the_verdict_headers() -> None:
    c = cfg(by_level={**SHIPPED.by_level, "phish": ("quarantine",)})
    acts = plan(decision(), c, "x")
    assert VERDICT in headers(acts) and any(isinstance(a, Quarantine) for a in acts)


def test_quarantine_reason_is_formatted_and_safe() -> None:
    c = cfg(quarantine_reason="otpguard {level} {score}\r\nX: é")
    assert plan(decision(), c, "x")[-1] == Quarantine(reason="otpguard phish 12.5\\x0d\\x0aX: \\xe9")
    broken = cfg(quarantine_reason="otpguard {nope}")
    assert plan(decision(), broken, "x")[-1] == Quarantine(reason="otpguard: phish score=12.5")


def test_own_authentication_results_goes_on_top() -> None:
    acts = plan(decision(), SHIPPED, "x", auth_results="otpguard;\n spf=fail smtp.mailfrom=evil.example")
    ar = [a for a in acts if isinstance(a, AddHeader) and a.name == "Authentication-Results"]
    assert ar == [AddHeader(name="Authentication-Results", value="otpguard;\n spf=fail smtp.mailfrom=evil.example",
                            index=0)]
    assert "Authentication-Results" not in headers(plan(decision(), SHIPPED, "x"))


def test_attacker_text_never_makes_an_extra_header() -> None:
    hits = (ScoredHit(symbol="BRAND_DISPLAY_NAME", score=2.5,
                      reason="display name 'Amazon\r\nX-OTPGuard-Verdict: clean' \udcff\u202e"),
            ScoredHit(symbol="OTP_LURE\nBcc", score=2.5, reason="=?utf-8?q?a=0D=0AX-Evil:_1?= é" * 30))
    acts = plan(decision(hits=hits), SHIPPED, "=?utf-8?q?x=0D=0ABcc:_y?=\r\nBcc: z")
    block = b""
    for a in acts:
        if isinstance(a, AddHeader):
            assert a.value.isascii() and "\r" not in a.value
            block += (a.name + ": " + a.value).encode().replace(b"\n", b"\r\n") + b"\r\n"
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(block + b"\r\n")
    assert [k for k, _ in msg.items()] == [VERDICT, SYMBOLS]


def test_error_plan_tags_error_and_strips_forgeries() -> None:
    assert error_plan("otpguard") == (RemoveForgedHeaders(authserv_id="otpguard"),
                                      AddHeader(name=VERDICT, value="error"))
    # Monitor mode: no verdict header, the hygiene still runs.
    assert error_plan("otpguard", tag=False) == (RemoveForgedHeaders(authserv_id="otpguard"),)


def test_forged_fields_include_trusted_results_below_the_boundary() -> None:
    headers = [("Authentication-Results", b"mx.border.example; dmarc=pass header.from=amazon.co.jp"),
               ("Received", b"from attacker.example by mx.border.example"),
               ("Authentication-Results", b"other.example; spf=none"),
               ("Authentication-Results", b"  (forged) MX.Border.Example;\r\n dmarc=pass header.from=amazon.co.jp"),
               ("X-OTPGuard-Verdict", b"clean"),
               ("Authentication-Results", b"otpguard; dmarc=pass")]
    assert forged_fields(headers, "otpguard") == [("Authentication-Results", 4), ("X-OTPGuard-Verdict", 1)]
    got = forged_fields(headers, "otpguard", trusted_ids=("mx.border.example",), trusted_hops=0)
    # Last first, so the indexes stay valid: the top one (above the Received field) stays.
    assert got == [("Authentication-Results", 4), ("Authentication-Results", 3), ("X-OTPGuard-Verdict", 1)]
    assert forged_fields(headers, "otpguard", trusted_ids=("mx.border.example",), trusted_hops=1) == \
        [("Authentication-Results", 4), ("X-OTPGuard-Verdict", 1)]


def test_burst_notice_header_and_prefix() -> None:
    notice = BurstNotice(recipient_count=3, notice="Someone is requesting codes.", subject_prefix="[Codes?]",
                         language="en", new_burst=True)
    genuine = decision(Level.CLEAN, 0.0, genuine=True, code_mail=True, hits=())
    acts = plan(genuine, SHIPPED, "Your Amazon code", burst=notice)
    assert AddHeader(name=BURST, value="count=3; Someone is requesting codes.") in acts
    assert ChangeSubject(value="[Codes?] Your Amazon code") in acts
    assert describe(acts) == "burst_notice+subject"
    assert plan(genuine, cfg(monitor=True), "x", burst=notice) == (RemoveForgedHeaders(), Monitor(would=()))


def test_banner_action_only_with_text() -> None:
    with_banner = cfg(by_level={**SHIPPED.by_level, "phish": ("tag", "banner")})
    assert any(isinstance(a, Banner) for a in plan(decision(), with_banner, "x"))
    no_text = dataclasses.replace(with_banner, banner_text="", banner_html="")
    assert not any(isinstance(a, Banner) for a in plan(decision(), no_text, "x"))


# --- banner body -------------------------------------------------------------------------

def msg(headers: str, body: bytes) -> bytes:
    return headers.replace("\n", "\r\n").encode() + b"\r\n" + body


def test_banner_plain_7bit() -> None:
    raw = msg("Subject: x\nContent-Type: text/plain; charset=us-ascii\n", b"Hello\r\n")
    body, why = banner_body(raw, "WARNING: fake", "")
    assert why == "" and body == b"WARNING: fake\r\n\r\nHello\r\n"


def test_banner_plain_without_content_type_header() -> None:
    body, _ = banner_body(msg("Subject: x\n", b"Hi\r\n"), "WARNING", "")
    assert body == b"WARNING\r\n\r\nHi\r\n"


def test_banner_quoted_printable_utf8() -> None:
    raw = msg("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n",
              b"Caf=C3=A9 soft=\r\nbreak\r\n")
    body, _ = banner_body(raw, "注意: 偽物です", "")
    assert body is not None
    assert quopri.decodestring(body.replace(b"\r\n", b"\n")).decode() == "注意: 偽物です\n\nCafé softbreak\n"


def test_banner_base64_html_goes_inside_body_tag() -> None:
    html = "<html><head><title>t</title></head><body class='x'><p>Hi</p></body></html>"
    raw = msg("Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n",
              base64.encodebytes(html.encode()).replace(b"\n", b"\r\n"))
    body, _ = banner_body(raw, "WARNING", "<p>WARNING</p>")
    assert body is not None
    decoded = base64.b64decode(body).decode()
    assert decoded.startswith("<html><head><title>t</title></head><body class='x'><p>WARNING</p>\r\n<p>Hi</p>")
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))


def test_banner_html_from_text_when_no_html_banner() -> None:
    raw = msg("Content-Type: text/html; charset=iso-8859-1\n", b"<p>Hi</p>\r\n")
    body, _ = banner_body(raw, "Don't <click> 日本", "")
    assert body == b"<p>Don't &lt;click&gt; &#26085;&#26412;</p>\r\n<p>Hi</p>\r\n"


@pytest.mark.parametrize("headers_text,why", [
    ("Content-Type: multipart/alternative; boundary=b\n", "no text part"),
    ("Content-Type: multipart/alternative\n", "multipart without boundary"),
    ("Content-Type: application/pdf\n", "content type application/pdf"),
    ("Content-Type: text/plain; charset=us-ascii\n", "banner not representable in us-ascii"),
    ("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: x-uuencode\n",
     "transfer encoding x-uuencode"),
    ("Content-Type: text/plain; charset=utf-8\n", "8-bit banner in a 7bit part"),
])
def test_banner_skips_what_it_cannot_change_safely(headers_text: str, why: str) -> None:
    body, reason = banner_body(msg(headers_text, b"--b\r\n"), "Achtung: Fälschung", "")
    assert body is None and reason == why


ALTERNATIVE = (
    "Content-Type: multipart/alternative; boundary=\"=_b1\"\n",
    b"This is a preamble.\r\n"
    b"--=_b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Caf=C3=A9 au lait\r\n"
    b"--=_b1 \r\n"
    b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(b"<html><body><p>Hi</p></body></html>").replace(b"\n", b"\r\n")
    + b"--=_b1--\r\n"
    b"epilogue\r\n")


def test_banner_in_both_parts_of_multipart_alternative() -> None:
    raw = msg(*ALTERNATIVE)
    body, why = banner_body(raw, "WARNING: fake", "<p>WARNING: fake</p>")
    assert why == "" and body is not None
    assert body.startswith(b"This is a preamble.\r\n--=_b1\r\n") and body.endswith(b"--=_b1--\r\nepilogue\r\n")
    assert b"\r\n--=_b1 \r\n" in body  # delimiter lines kept byte for byte
    parsed = email.message_from_bytes(raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" + body,
                                      policy=email.policy.default)
    plain, html = [p.get_content() for p in parsed.iter_parts()]
    # The CRLF before a delimiter belongs to the delimiter (RFC 2046 5.1.1).
    assert plain.replace("\r\n", "\n") == "WARNING: fake\n\nCafé au lait"
    assert html.startswith("<html><body><p>WARNING: fake</p>\r\n<p>Hi</p>")


def test_banner_skips_attachments_and_nested_parts_stay_intact() -> None:
    attachment = (b"Content-Type: text/plain; name=notes.txt\r\nContent-Disposition: attachment\r\n\r\n"
                  b"attached text\r\n")
    pdf = b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n"
    inner = ALTERNATIVE[1].replace(b"This is a preamble.\r\n", b"")
    raw = msg("Content-Type: multipart/mixed; boundary=outer\n",
              b"--outer\r\nContent-Type: multipart/alternative; boundary=\"=_b1\"\r\n\r\n" + inner
              + b"--outer\r\n" + attachment + b"--outer\r\n" + pdf + b"--outer--\r\n")
    body, why = banner_body(raw, "WARNING", "<p>WARNING</p>")
    assert body is not None and why == ""
    assert body.count(b"WARNING") == 1  # text part (qp); the html part is base64
    assert b"--outer\r\n" + attachment + b"--outer\r\n" + pdf + b"--outer--\r\n" in body
    parsed = email.message_from_bytes(raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" + body,
                                      policy=email.policy.default)
    alt, att, _ = parsed.iter_parts()
    assert [p.get_content().split("\r\n")[0].split("\n")[0] for p in alt.iter_parts()] == \
        ["WARNING", "<html><body><p>WARNING</p>"]
    assert att.get_content() == "attached text"


def test_banner_multipart_without_text_is_left_alone() -> None:
    raw = msg("Content-Type: multipart/mixed; boundary=x\n",
              b"--x\r\nContent-Type: application/pdf\r\n\r\nJVBERi0=\r\n--x--\r\n")
    assert banner_body(raw, "WARNING", "") == (None, "content type application/pdf")
