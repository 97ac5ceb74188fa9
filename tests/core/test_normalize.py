"""Normalisation shortcuts: the same text as the plain forms they replace."""
from __future__ import annotations

import re

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from otpguard.core.normalize import _INVISIBLE, _STRAY_MARK_RE, _fold_table, fold_spaces, skeleton, strip_invisible


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2000\u200a\u200b\u2028\u202f"
                                        "\u205f\u3000\ufeffé語"), max_size=20))
def test_fold_spaces_is_the_whitespace_regex(text):
    # Every character str.isspace() knows (and some it does not: U+200B, U+FEFF), at both ends
    # too, against the regex clean() used before.
    assert fold_spaces(text) == re.sub(r"[\s\u00a0\u2000-\u200a\u3000]+", " ", text)


def _strip_invisible_plainly(text: str) -> str:
    """Every invisible character out, then every stray mark after a Latin letter."""
    text = re.sub(f"[{_INVISIBLE}]", "", text)
    return _STRAY_MARK_RE.sub("", text)


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=st.sampled_from("aZ \u00e9\u00ad\u200b\u200d\u2066\ufeff\U000e0041\ufe0f\u0301\u073f\u20dd"
                                        "\u3042\u0410"), max_size=16))
def test_strip_invisible_is_the_plain_removal(text):
    assert strip_invisible(text) == _strip_invisible_plainly(text)


def test_a_defaced_brand_name_is_mended():
    assert strip_invisible("A\u073fm\u073fa\u200bz\ufeffon") == "Amazon"


def _table_keys(astral: bool) -> list[str]:
    return sorted(chr(c) for c in _fold_table() if (c > 0xFFFF) == astral)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_table_keys(False)), st.sampled_from(_table_keys(True)),
                          st.sampled_from(list("az09 あ語é😀"))), max_size=12).map("".join))
def test_skeleton_is_the_whole_table_translation(text):
    # Homoglyphs from both planes (Cyrillic, fullwidth, mathematical letters) beside text the
    # table leaves alone (kana, kanji, an emoji): the search-first shortcut must
    # never skip a character the table maps.
    assert skeleton(text) == text.translate(_fold_table())


def test_every_mapped_character_is_found_alone_and_in_japanese_text():
    for ch in _table_keys(False) + _table_keys(True):
        assert skeleton(f"\u3042{ch}\u8a9e") == f"\u3042{_fold_table()[ord(ch)]}\u8a9e"


# --- may_hold: the shortcut that spares most mail clean() -------------------------------------

_FORMS = ("amazon", "amazon.co.jp", "アマゾン")
_NEAR_TEXT = st.lists(st.sampled_from(list("amazonAMAZON .co.jp\n\t-z") + ["\u200b", "а", "ｍ", "アマゾン", "a m a z o n",
                                                                            "\xa0", "©", "’", "…", "\u2024", "™", "ⓜ", "\u202e", "\u0301"]),
                      max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(_NEAR_TEXT)
def test_may_hold_never_says_no_when_the_read_text_holds_a_form(text):
    from otpguard.core.normalize import clean, may_hold

    if any(form in skeleton(clean(text)) for form in _FORMS):
        assert may_hold(text, _FORMS)


@pytest.mark.parametrize("text,expected", [
    ("Your order has shipped.", False),          # ASCII, no form: clean() is not needed
    ("Sent from my AMAZON Fire", True),         # case folds
    ("A m a z o n security", True),            # letter spacing: read whole
    ("Amаzon", True),                           # a Cyrillic a: not ASCII, read whole
    ("ordinary café text", True),               # a letter outside ASCII: read whole
    ("Price:\xa0$5 ©\xa02024 • ok…", False),       # no-break spaces, ©, bullets: read here
    ("a\xa0m\xa0a\xa0z\xa0o\xa0n", True),            # letters spaced by no-break spaces
    ("ⓐmazon", True),                           # NFKC makes a letter of it
])
def test_may_hold_answers_no_only_for_plain_ascii_without_a_form(text, expected):
    from otpguard.core.normalize import may_hold

    assert may_hold(text, _FORMS) is expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["Amazon ", "é", "ü", "Ａ", "а", "ο", "𝐀", "日本", "\n", "x" * 300]), max_size=40))
def test_skeleton_reads_long_text_as_translate_does(pieces):
    """The long-text path (regex substitution of the few confusables) and str.translate agree."""
    from otpguard.core.normalize import _fold_table

    text = "".join(pieces) * 3
    assert skeleton(text) == text.translate(_fold_table())
