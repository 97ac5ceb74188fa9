"""Each check on real .eml fixtures: the symbol fires where it should and not where it should not."""
from __future__ import annotations

import pytest

from dataclasses import replace

from conftest import mail
from otpguard.engine import Engine
from otpguard.core.model import Level

pytestmark = pytest.mark.verdict


def symbols(decision) -> set[str]:
    return {h.symbol for h in decision.hits if h.score > 0 or h.symbol.startswith(("AUTH_", "FROM_BRAND_DOMAIN"))}


def test_lookalike_sender_with_otp_is_phish(engine):
    d = engine.analyse(mail("lookalike_sender_otp.eml"), _env())
    assert d.level is Level.PHISH
    assert {"LOOKALIKE_FROM_DOMAIN", "OTP_LURE", "CODE_TOKEN", "SIGNIN_LURE", "LINK_LOOKALIKE_DOMAIN",
            "IMPERSONATION"} <= symbols(d)
    assert d.code_mail


def test_a_boundary_parameter_the_stdlib_cannot_read_hides_nothing(engine):
    # A mangled RFC 2231 boundary ("boundary*; boundary*1=...") makes Python's email package
    # raise: the sender, subject and body must still be analysed, not dropped as unparsable.
    d = engine.analyse(mail("mangled_boundary_parameter.eml"), _env())
    assert d.level is Level.PHISH
    assert {"LOOKALIKE_FROM_DOMAIN", "BRAND_DISPLAY_NAME", "ACCOUNT_LOCKED_LURE", "LINK_LOOKALIKE_DOMAIN"} <= symbols(d)


def test_japanese_display_name_spoof_is_phish(engine):
    d = engine.analyse(mail("display_name_spoof_ja_iso2022jp.eml"), _env())
    assert d.level is Level.PHISH
    assert {"BRAND_DISPLAY_NAME", "SIGNIN_LURE", "ACCOUNT_LOCKED_LURE", "URGENCY", "LINK_OFF_BRAND"} <= symbols(d)


def test_cyrillic_brand_name_is_a_homoglyph_and_ip_link_is_flagged(engine):
    d = engine.analyse(mail("homoglyph_display_shift_jis.eml"), _env())
    assert {"BRAND_HOMOGLYPH", "LINK_IP_LITERAL", "RESET_LURE"} <= symbols(d)
    reason = next(h.reason for h in d.hits if h.symbol == "BRAND_HOMOGLYPH")
    assert "\\u0410mazon" in reason  # evidence shown ASCII-safe


def test_brand_url_shown_over_a_shortener_and_password_form(engine):
    d = engine.analyse(mail("link_text_mismatch.eml"), _env())
    assert {"LINK_TEXT_HREF_MISMATCH", "LINK_SHORTENER", "LOGIN_FORM", "PAYMENT_LURE"} <= symbols(d)
    mismatch = next(h.reason for h in d.hits if h.symbol == "LINK_TEXT_HREF_MISMATCH")
    assert mismatch == "shows www.amazon.com, goes to bit.ly"


def test_callback_number_next_to_an_order_dispute(engine):
    d = engine.analyse(mail("callback_order_dispute.eml"), _env())
    assert {"CALLBACK_PHONE_NUMBER", "ORDER_DISPUTE_LURE"} <= symbols(d)
    assert "+14155550143" in next(h.reason for h in d.hits if h.symbol == "CALLBACK_PHONE_NUMBER")
    assert d.level is Level.PHISH


def test_official_numbers_are_not_callback_lures(engine):
    raw = mail("callback_order_dispute.eml").replace(b"+1 (415) 555-0143", b"+1 888-280-4331")
    assert "CALLBACK_PHONE_NUMBER" not in symbols(engine.analyse(raw, _env()))


def test_newsletter_mentioning_the_brand_is_clean(engine):
    d = engine.analyse(mail("ordinary_newsletter.eml"), _env())
    assert d.level is Level.CLEAN and d.score == 0


def test_trusted_upstream_dmarc_fail_on_brand_domain_is_decisive(config):
    eng = Engine(replace(config, auth=replace(config.auth, verify=False, trusted_authserv_ids=("mx.example.net",))),
                 verify=False)
    d = eng.analyse(mail("upstream_dmarc_fail.eml"), _env())
    assert d.level is Level.PHISH
    assert "DMARC_FAIL_BRAND_DOMAIN" in symbols(d)
    assert d.auth is not None and d.auth.source == "upstream:mx.example.net"


def test_untrusted_authentication_results_are_ignored(engine):
    d = engine.analyse(mail("upstream_dmarc_fail.eml"), _env())
    assert "DMARC_FAIL_BRAND_DOMAIN" not in symbols(d)
    assert d.level is Level.CLEAN  # an unsigned brand From alone, with on-brand links, is not a verdict


def test_aligned_upstream_pass_marks_genuine_and_stands_suspicion_down(config, corpus):
    # legit/010: genuine Amazon mail with mx.google.com's dkim=pass/dmarc=pass results, saved
    # from the mailbox: Gmail wrote them below its own two Received fields (trusted_hops = 2).
    eng = Engine(replace(config, auth=replace(config.auth, verify=False, trusted_authserv_ids=("mx.google.com",),
                                              trusted_hops=2)), verify=False)
    d = eng.analyse((corpus / "legit" / "010.eml").read_bytes(), _env())
    assert d.genuine and d.level is Level.CLEAN
    assert [h.symbol for h in d.hits] == ["AUTH_GENUINE"]


def test_trusted_results_below_the_trust_boundary_are_not_believed(config, corpus):
    # The same message with the default boundary (0): the results sit below two Received
    # fields, where anyone could have written them before mail reached the trusted host.
    eng = Engine(replace(config, auth=replace(config.auth, verify=False, trusted_authserv_ids=("mx.google.com",))),
                 verify=False)
    d = eng.analyse((corpus / "legit" / "010.eml").read_bytes(), _env())
    assert not d.genuine and d.auth is None
    forged = [h for h in d.hits if h.symbol == "FORGED_AUTH_RESULTS"]
    assert forged and "mx.google.com" in forged[0].reason and forged[0].score > 0


def test_genuine_code_mail_is_clean_and_counted_as_code_mail(engine, corpus):
    d = engine.analyse((corpus / "legit" / "009.eml").read_bytes(), _env())
    assert d.level is Level.CLEAN and d.code_mail


def test_brand_from_contradicted_by_its_envelope_is_flagged(engine):
    raw = mail("upstream_dmarc_fail.eml")
    from otpguard.core.model import Envelope
    d = engine.analyse(raw, Envelope(mail_from="x@bulk-sender.example", helo="amazon.co.jp",
                                     client_name="unknown", client_ip="45.76.10.20"))
    assert {"ENVELOPE_OFF_BRAND", "FORGED_BRAND_HELO", "FROM_BRAND_UNSIGNED"} <= symbols(d)
    assert d.level is not Level.CLEAN


def test_oversized_message_is_analysed_on_its_header_and_displayed_front(config):
    eng = Engine(replace(config, analysis=replace(config.analysis, max_message_bytes=1024)), verify=False)
    d = eng.analyse(b"From: a@b.example\r\n\r\n" + b"x" * 2000, _env())
    assert d.level is Level.CLEAN
    assert "NOT_ANALYSED" in {h.symbol for h in d.hits}
    assert any("partly analysed" in n for n in d.notes)


def test_oversized_message_with_nothing_received_is_not_analysed(engine):
    d = engine.too_large(50_000_000)
    assert not d.analysed and d.level is Level.CLEAN
    assert d.hits[0].symbol == "NOT_ANALYSED"


def test_a_failing_check_is_recorded_and_the_rest_still_run(engine, monkeypatch):
    from otpguard.core.checks.phones import PhoneCheck

    def boom(self, ctx):
        raise RuntimeError("phone data missing")
        yield  # pragma: no cover

    monkeypatch.setattr(PhoneCheck, "run", boom)
    d = engine.analyse(mail("callback_order_dispute.eml"), _env())
    assert any("phones failed" in n for n in d.notes)
    assert "ORDER_DISPUTE_LURE" in symbols(d)


def _env():
    from otpguard.core.model import Envelope
    return Envelope()


def test_brand_mail_to_an_address_other_than_the_registered_alias(config):
    from otpguard.core.model import Envelope

    aliased = replace(config, auth=replace(config.auth, verify=False),
                      aliases=replace(config.aliases, map={"alice@example.org": "alice+amazon@example.org"}))
    eng = Engine(aliased, verify=False)
    raw = mail("link_text_mismatch.eml")
    hit = eng.analyse(raw, Envelope(rcpt_to=("alice@example.org",)))
    miss = eng.analyse(raw, Envelope(rcpt_to=("alice+amazon@example.org",)))
    assert "ALIAS_MISMATCH" in symbols(hit) and "ALIAS_MISMATCH" not in symbols(miss)
    assert hit.score > miss.score


# --- a DKIM-Signature header nobody verified is no signature (the forged-signature bypass) ---

def _forged_lures_count(d) -> None:
    assert d.level is Level.PHISH, [(h.symbol, h.score) for h in d.hits]
    assert {"IMPERSONATION", "OTP_LURE", "ENVELOPE_OFF_BRAND"} <= symbols(d)
    assert "FROM_BRAND_UNSIGNED" not in symbols(d)  # a signature header is there: not "no signature"
    assert any(h.symbol == "BRAND_SIGNATURE_UNVERIFIED" and "amazon.co.jp" in h.reason for h in d.hits)


def test_a_forged_brand_signature_header_mutes_nothing_without_verification(engine):
    # verify = false (the engine fixture): the header d=amazon.co.jp was never checked.
    _forged_lures_count(engine.analyse(mail("forged_brand_signature.eml"), _env()))


def test_a_forged_brand_signature_header_mutes_nothing_beside_upstream_results_without_dkim(config):
    # A trusted upstream host reported SPF only: its results say nothing of the signature.
    eng = Engine(replace(config, auth=replace(config.auth, verify=False, trusted_authserv_ids=("mx.example.org",))),
                 verify=False)
    raw = b"Authentication-Results: mx.example.org; spf=none smtp.mailfrom=mailer.example.net\r\n" \
        + mail("forged_brand_signature.eml")
    d = eng.analyse(raw, _env())
    assert d.auth is not None and d.auth.source == "upstream:mx.example.org" and d.auth.dkim == ()
    _forged_lures_count(d)


def test_a_forged_brand_signature_header_mutes_nothing_in_a_message_over_max_parse_bytes(config):
    # Only a prefix is analysed and a prefix is never authenticated (engine.analyse).
    eng = Engine(replace(config, analysis=replace(config.analysis, max_parse_bytes=2048)), verify=True,
                 dns=object())  # never asked: a truncated message is not authenticated
    raw = mail("forged_brand_signature.eml") + b"<!-- " + b"padding " * 1000 + b"-->\r\n"
    d = eng.analyse(raw, _env())
    assert any("analysed the first 2048 bytes" in n for n in d.notes) and d.auth is None
    _forged_lures_count(d)


# --- trace fields read as MTAs write them ---------------------------------------------------------

def _brand_mail(extra_headers: bytes) -> bytes:
    return (extra_headers + b"From: Amazon.co.jp <account-update@amazon.co.jp>\r\nTo: a@example.org\r\n"
            b"Subject: Your order\r\nDKIM-Signature: v=1; d=amazon.co.jp; s=x; h=from; b=x; bh=x\r\n\r\n"
            b"Your order has shipped.\r\n")


def test_a_brand_helo_from_a_private_address_is_an_internal_hop_in_every_received_form(engine):
    internal = _brand_mail(b"Received: from ip-10-6-11-83.compute.internal (HELO smtpout.mail.amazon.co.jp)"
                           b" ([10.6.11.83])\r\n  by relay.example.net with ESMTP; 30 Nov 2025 07:15:28 +0000\r\n")
    assert "FORGED_BRAND_HELO" not in {h.symbol for h in engine.analyse(internal, _env()).hits}
    public = internal.replace(b"[10.6.11.83]", b"[45.76.10.20]")
    assert "FORGED_BRAND_HELO" in {h.symbol for h in engine.analyse(public, _env()).hits}


def test_a_list_copy_is_not_judged_by_the_envelope_the_list_wrote(engine):
    from otpguard.core.model import Envelope
    env = Envelope(mail_from="list-bounces@lists.example.org", client_ip="192.0.2.7", helo="lists.example.org")
    direct = _brand_mail(b"")
    assert "ENVELOPE_OFF_BRAND" in {h.symbol for h in engine.analyse(direct, env).hits}
    listed = _brand_mail(b"List-Id: <dev.lists.example.org>\r\n")
    assert "ENVELOPE_OFF_BRAND" not in {h.symbol for h in engine.analyse(listed, env).hits}
    # ...but what the list's own receiving host recorded of the original envelope still counts.
    spf = b"Received-SPF: none (lists.example.org: domain of x@bulk.example does not designate) envelope-from=<x@bulk.example>\r\n"
    assert "ENVELOPE_OFF_BRAND" in {h.symbol for h in engine.analyse(_brand_mail(spf).replace(b"From:", b"List-Id: <x>\r\nFrom:", 1), env).hits}


_DETAILS_FORM = """From: "Amazon" <notice@account-review-desk.top>
To: user@example.org
Subject: Confirm your details
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<p>Please confirm your identity to keep using your account.</p>
<form action="https://collect-details.top/submit">{fields}<input type="submit" value="Send"></form>
"""


@pytest.mark.parametrize("fields, strength", [
    # Name and card number beside a credential lure: details collected for someone else.
    ('<input type="text" name="n"><input type="number" name="c">', 0.6),
    # One field is a search box, not a form that collects details.
    ('<input type="text" name="q">', None),
])
def test_a_form_asking_for_several_details_next_to_a_lure_is_a_login_form(engine, fields, strength):
    d = engine.analyse(_DETAILS_FORM.format(fields=fields).encode(), _env())
    found = [h for h in d.hits if h.symbol == "LOGIN_FORM"]
    if strength is None:
        assert not found, found
    else:
        assert [(h.strength, "collect-details.top" in h.reason) for h in found] == [(strength, True)]
