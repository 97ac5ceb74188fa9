"""Lure intent from concepts that occur together (core/intent.py): paraphrases and other names
for the code are found, look-alike wording that asks for nothing is not."""
from __future__ import annotations

import pytest

from otpguard.core.intent import CONCEPTS, KEY, NOT_AFTER, concepts, intents
from otpguard.core.normalize import clean

pytestmark = pytest.mark.verdict


def kinds(text: str) -> set[str]:
    return {i.kind for i in intents(clean(text))}


@pytest.mark.parametrize("text, kind", [
    ("承認コードを入力してください", "otp"),
    ("確認番号: 482913", "otp"),
    ("Your authorization code is 482913.", "otp"),
    ("Enter the access number we sent you to sign in.", "otp"),
    ("Someone tried to sign in from a device we do not know.", "signin"),
    ("ご利用のアカウントで不審なログインがありました", "signin"),
    ("Votre compte a été temporairement suspendu.", "locked"),
    ("Ihr Kundenkonto wurde eingeschränkt.", "locked"),
    ("お客様のアカウントは一時的に利用できなくなっております", "locked"),
    ("Su pago no se pudo procesar.", "payment"),
    ("Il pagamento non è riuscito.", "payment"),
    ("Não foi possível processar o seu pagamento.", "payment"),
    ("请验证您的身份", "verify"),
    ("Bitte bestätigen Sie Ihre Daten.", "verify"),
    ("If you did not place this order, cancel it now.", "dispute"),
    ("Please change your password.", "reset"),
    ("您的账户存在异常登录", "signin"),
])
def test_paraphrases_and_other_names_are_found(text, kind):
    assert kind in kinds(text)


@pytest.mark.parametrize("text", [
    "Use promo code SAVE20 at checkout.",
    "Scan the QRコード at the counter.",
    "ご注文番号をご確認ください",  # an order number, not a code
    "The source code verification support landed in this release.",
    "Five novels we loved this week.",
    "Your parcel has been delivered to the front door.",
])
def test_wording_that_asks_for_nothing_is_not_a_lure(text):
    assert kinds(text) == set()


def test_a_word_belongs_to_one_concept_and_the_longest_stem_wins():
    found = concepts(clean("確認番号をお知らせください"))
    assert found["code"] == [(0, "確認番号")] and "verify" not in found


def test_stems_are_long_enough_for_the_index_and_exclusions_name_real_stems():
    for latin, _cjk in CONCEPTS.values():
        assert all(len(s.rstrip("=").replace(" ", "")) >= KEY for s in latin)
    stems = {s.rstrip("=") for latin, cjk in CONCEPTS.values() for s in latin + cjk}
    assert set(NOT_AFTER) <= stems


def test_only_the_head_of_a_hostile_text_is_scanned():
    text = clean("neutral words " * 5000 + "your account is suspended")
    assert kinds(text) == set()  # past SCAN_CHARS: lures sit at the top, hostile text costs a bounded scan
