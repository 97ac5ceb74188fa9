"""ALIAS_MISMATCH: brand mail to a recipient who gave the brand a different address."""
from __future__ import annotations

import pytest

from otpguard.core.checks.aliases import ALIAS_MISMATCH, alias_hit, alias_mismatch, alias_mismatch_for
from otpguard.core.model import Decision, Envelope, Level

pytestmark = pytest.mark.verdict

ALIASES = {"alice@example.org": "alice+amazon@example.org"}


def brand_mail(*, brand: str | None = "amazon", genuine: bool = False) -> Decision:
    return Decision(level=Level.SUSPICIOUS, score=6.0, brand=brand, genuine=genuine)


def env(*rcpt: str) -> Envelope:
    return Envelope(rcpt_to=rcpt)


def test_brand_mail_to_the_main_address_is_a_mismatch() -> None:
    reason = alias_mismatch(brand_mail(), env("alice@example.org"), ALIASES)
    assert reason is not None and "amazon" in reason
    # The reason goes into a header other recipients can read: no address in it.
    assert "@" not in reason and "alice" not in reason


def test_brand_mail_to_the_alias_is_fine() -> None:
    assert alias_mismatch(brand_mail(), env("alice+amazon@example.org"), ALIASES) is None
    assert alias_mismatch(brand_mail(), env("<Alice+Amazon@Example.ORG>"), ALIASES) is None


def test_case_and_brackets_do_not_hide_a_mismatch() -> None:
    assert alias_mismatch(brand_mail(), env("<ALICE@Example.org>"), ALIASES) is not None


def test_no_brand_claim_no_alias_or_genuine_is_no_mismatch() -> None:
    assert alias_mismatch(brand_mail(brand=None), env("alice@example.org"), ALIASES) is None
    assert alias_mismatch(brand_mail(), env("bob@example.org"), ALIASES) is None
    assert alias_mismatch(brand_mail(genuine=True), env("alice@example.org"), ALIASES) is None
    assert alias_mismatch(brand_mail(), env("alice@example.org"), {}) is None


def test_several_recipients_counted_in_the_reason() -> None:
    aliases = {**ALIASES, "bob@example.org": "bob.shop@example.org"}
    reason = alias_mismatch(brand_mail(), env("alice@example.org", "bob.shop@example.org", "carol@x"), aliases)
    assert reason is not None and "1 of 3" in reason


def test_hit_for_the_pipeline() -> None:
    hit = alias_hit("alias: x")
    assert (hit.symbol, hit.strength, hit.reason) == (ALIAS_MISMATCH, 1.0, "alias: x")
    assert ALIAS_MISMATCH == "ALIAS_MISMATCH"


def test_parts_form_for_the_pipeline() -> None:
    assert alias_mismatch_for(brand="amazon", genuine=False, rcpt_to=("alice@example.org",),
                              alias_map=ALIASES) == alias_mismatch(brand_mail(), env("alice@example.org"), ALIASES)
    assert alias_mismatch_for(brand="amazon", genuine=True, rcpt_to=("alice@example.org",), alias_map=ALIASES) is None
