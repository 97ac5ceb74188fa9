"""Genuine mail that looks close to a lure stays clean (issue: genuine mail is sacred).

Each fixture in tests/fixtures/genuine is a shape real mail takes: Amazon's own service
notices from its sending domains (an SNS CloudWatch alarm, an AWS bill), Amazon's marketing and
order mail in several countries, a person forwarding a genuine code mail, a mailing-list copy
whose From the list rewrote, a shop's code mail that mentions Amazon Pay, and a security
newsletter that quotes a lure to warn its readers. Offline (no DNS), under the empty envelope
and the envelope each records, every one is clean, and no check reads the Amazon family's own
names as lookalikes.
"""
from __future__ import annotations

import pytest

from conftest import FIXTURES
from otpguard.core.model import Envelope, Level
from support.corpus import recorded_envelope

pytestmark = pytest.mark.verdict

GENUINE = sorted((FIXTURES / "genuine").glob("*.eml"))


@pytest.mark.parametrize("path", GENUINE, ids=lambda p: p.stem)
@pytest.mark.parametrize("kind", ["empty", "recorded"])
def test_genuine_shape_is_clean(engine, path, kind):
    raw = path.read_bytes()
    d = engine.analyse(raw, Envelope() if kind == "empty" else recorded_envelope(raw))
    assert d.level is Level.CLEAN, [(h.symbol, h.score, h.reason) for h in d.hits]
    assert not {"LOOKALIKE_FROM_DOMAIN", "LINK_LOOKALIKE_DOMAIN", "IMPERSONATION"} & set(d.symbols)


def test_every_shape_of_the_issue_has_a_fixture():
    names = {p.stem for p in GENUINE}
    assert {"aws_sns_cloudwatch_alarm", "aws_billing_notice", "user_forward_inline_otp",
            "list_copy_dmarc_mitigated", "shop_code_mentions_amazon_pay",
            "awareness_newsletter_quotes_a_lure"} <= names
    assert len([n for n in names if n.startswith("amazon_")]) >= 4  # Amazon's mail, several countries


def test_the_aws_alarm_is_the_brand_family_not_a_lookalike(engine):
    d = engine.analyse((FIXTURES / "genuine" / "aws_sns_cloudwatch_alarm.eml").read_bytes(), Envelope())
    assert d.score == 0 and d.hits == ()


def test_a_spoofed_sns_sender_with_a_callback_scam_is_not_waved_through(engine):
    """sns.amazonaws.com is the brand's sending domain, but what it carries can be a customer's
    words (a topic name): a refund-scam number in it is still judged."""
    raw = (FIXTURES / "genuine" / "aws_sns_cloudwatch_alarm.eml").read_bytes().replace(
        b"You are receiving this email because",
        b"Your Amazon Prime membership was renewed for $499.99. If you did not make this purchase, "
        b"call our billing desk at +1 (808) 555-0147 to cancel and get a refund.\n\nYou are receiving this email because")
    d = engine.analyse(raw, Envelope())
    assert "CALLBACK_PHONE_NUMBER" in d.symbols and d.level is not Level.CLEAN
