"""Lure vocabulary: the compiled form of a kind finds exactly what its plain alternation finds."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otpguard.core.checks.base import customer_pattern, lure_patterns
from otpguard.core.normalize import clean
from otpguard.core.parse import parse_message
from otpguard.core.vocabulary import LURES, Phrases, _word_bounded, compile_kind, first_chars


def _kinds(config) -> dict[str, list[str]]:
    """Every lure kind of the shipped profiles, core phrases plus the profile's own."""
    out = {}
    for brand in config.brands:
        for kind in brand.lure_sets:
            out[f"{brand.id}:{kind}"] = LURES.get(kind, []) + [re.escape(clean(p)) for p in brand.extra_lures.get(kind, ())]
    return out


def _plain(patterns: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


def _matches(pattern: re.Pattern[str] | Phrases, text: str) -> list[tuple[int, int, str]]:
    """Every match, searching again from each position after a match's start: where it starts,
    where it ends and what it says (the lure evidence and the code window use all three)."""
    out, pos = [], 0
    while (m := pattern.search(text, pos)) is not None:
        out.append((m.start(), m.end(), m.group(0)))
        pos = m.start() + 1
    return out


def test_compiled_kinds_match_where_the_plain_alternations_match_on_real_mail(config, corpus):
    texts = []
    for folder in ("phish", "legit", "hardneg"):
        for path in sorted((corpus / folder).glob("*.eml")):
            msg = parse_message(path.read_bytes(), config.analysis)
            texts += [clean(msg.subject), clean(msg.text)[:20000], clean(msg.attachment_text)[:5000]]
    found = 0
    for kind, patterns in _kinds(config).items():
        fast, plain = compile_kind(patterns), _plain(patterns)
        for text in texts:
            got = _matches(fast, text)
            assert got == _matches(plain, text), kind
            found += len(got)
    assert found > 500  # the comparison saw real lures, not only misses


_WORDS = st.sampled_from(["your", "security", "code", "sign-in", "signin", "login", "attempt", "verify", "account",
                          "アカウント", "確認コード", "不正アクセス", "sicherheitscode", "mot de passe", "à", "de", "otp",
                          "password", "reset", "suspended", "locked", "prize", "gift", "card", "urgent", "24", "hours",
                          "x", "-", ".", "  ", "\n", "é", "tan", "mtan", "passcode", "one-time", "一次性密码", "验证码"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_WORDS, max_size=30).map(" ".join), st.lists(_WORDS, max_size=6).map("".join))
def test_compiled_kinds_agree_on_generated_text(config, spaced, glued):
    for kind, patterns in _kinds(config).items():
        fast, plain = compile_kind(patterns), _plain(patterns)
        for text in (spaced, glued, spaced + glued):
            assert _matches(fast, text) == _matches(plain, text), (kind, text)
            assert [(m.start(), m.group(0)) for m in fast.finditer(text)] == \
                [(m.start(), m.group(0)) for m in plain.finditer(text)], (kind, text)


def test_the_order_of_phrases_decides_as_in_the_plain_alternation():
    # Two phrases match at the same place: the first listed wins, whether it is word-bounded or not.
    for patterns in (["security", r"\bsecurity code\b"], [r"\bsecurity\b", "security code"]):
        assert _matches(compile_kind(patterns), "your security code") == \
            _matches(_plain(patterns), "your security code")
    assert compile_kind(["security", r"\bsecurity code\b"]).search("a security code").group(0) == "security"


@pytest.mark.parametrize("pattern,bounded", [
    (r"\ba|b", False), (r"\b(?:a|b)", True), (r"\b[|]x", True), (r"\b[]|]x", True), (r"\b[^]|]x", True),
    (r"\ba\|b", True), (r"\b(a)|(b)", False), (r"\b\\|x", False), (r"\bfoo(?#(|)x|y", False), (r"\\bx", False),
    ("x", False),
])
def test_word_bounded_phrases_are_told_apart_from_alternations(pattern, bounded):
    assert _word_bounded(pattern) is bounded


def test_the_checks_match_lures_with_these_compiled_kinds(config):
    # What the equivalence tests above cover is what Context.lures runs, for every brand.
    for brand in config.brands:
        for kind, pattern in lure_patterns(brand).items():
            extra = [re.escape(clean(p)) for p in brand.extra_lures.get(kind, ())]
            assert pattern.pattern == compile_kind(LURES.get(kind, []) + extra).pattern, (brand.id, kind)
            assert pattern.gated, (brand.id, kind)  # every shipped kind skips impossible starts in C


@pytest.mark.parametrize("pattern,first", [
    ("abc|d", "ad"), (r"\bx?y", "xy"), ("(?:a|b)c", "ab"), ("[a-c]z", "abc"), ("x*y+", "xy"), ("(?:x|y)?z", "xyz"),
    ("語|ab", "語a"), (r"\b(?:\s*)あ", None), (r"\wx", None), ("[^a]b", None), ("(?=a)a", None), ("a?", None),
    ("(?i:a)b", None), ("(?i)ab", None), ("(?s)a.", None), (".x", None), ("(a)\\1", "a"), ("x|", None), (r"\Bab", "a"),
])
def test_first_characters_of_a_pattern_are_known_or_unsure(pattern, first):
    assert first_chars(pattern) == (frozenset(first) if first is not None else None)


def test_a_phrase_may_start_with_a_line_end():
    phrases = compile_kind(["\nsecurity code", "pin"])
    assert phrases.gated and phrases.search("a\nsecurity code").group(0) == "\nsecurity code"


def test_finditer_of_an_ungated_pattern_that_matches_empty_text_ends():
    # An empty phrase (a profile's lure made only of invisible characters) matches everywhere:
    # finditer must still end, as re's does.
    phrases = Phrases(re.compile("x?"))
    assert not phrases.gated
    assert [m.span() for m in phrases.finditer("ab")] == [(0, 0), (1, 1), (2, 2)]


def test_a_pattern_compiled_with_flags_is_left_ungated():
    phrases = Phrases(re.compile("code|pin", re.I))
    assert not phrases.gated and phrases.search("Your PIN").group(0) == "PIN"


def test_an_ungated_kind_still_finds_what_the_plain_alternation_finds():
    # \w at the start: the first characters are unknown, so the plain search runs.
    phrases = compile_kind([r"\w+code", "pin"])
    assert not phrases.gated
    assert _matches(phrases, "a pin and a mycode") == _matches(_plain([r"\w+code", "pin"]), "a pin and a mycode")


_CUSTOMER_WORDS = st.sampled_from(["your", "votre", "ihre", "ihren", "su", "tu", "sua", "il tuo", "account", "compte",
                                   "cuenta de", "amazon", "amazons", "amazonia", "prime", "audible", "お客様の", "あなたの",
                                   "アマゾン", "您的", "亚马逊", "x", "-", " ", "é"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_CUSTOMER_WORDS, max_size=12).map(" ".join), st.lists(_CUSTOMER_WORDS, max_size=6).map("".join))
def test_customer_phrases_find_what_their_plain_pattern_finds(config, spaced, glued):
    for brand in config.brands:
        phrases = customer_pattern(brand.names + brand.products)
        assert phrases.gated
        for text in (spaced, glued):
            assert _matches(phrases, text) == _matches(phrases.pattern, text), text
