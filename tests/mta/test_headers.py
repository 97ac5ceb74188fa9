"""Header text: escaping, folding, verdict values, subject prefixes that keep RFC 2047 valid."""
from __future__ import annotations

import email.parser
import email.policy
from email.header import Header, decode_header, make_header

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otpguard.mta.headers import (SYMBOLS, VERDICT, burst_value, decode_subject, encoded_words, escape_text,
                              fold, format_score, is_own_header, rewrite_subject, safe_value,
                              subject_has_prefix, symbols_value, verdict_value)

JA_PREFIX = "[要注意]"


def as_header_block(name: str, value: str) -> bytes:
    """How Postfix writes a header we hand it: name, value, our LF folds as line breaks."""
    return (name + ": " + value).encode("utf-8", "surrogateescape").replace(b"\n", b"\r\n") + b"\r\n\r\n"


def header_fields(name: str, value: str) -> list[tuple[str, str]]:
    """Parse the header block back: must be exactly one field (no injection)."""
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(as_header_block(name, value))
    assert not msg.defects, msg.defects
    return list(msg.items())


def assert_single_safe_field(name: str, value: str, *, ascii_only: bool = True) -> None:
    """One field, folds only (LF + space), and ASCII when required."""
    assert "\r" not in value
    for line in value.split("\n")[1:]:
        assert line[:1] in (" ", "\t"), f"continuation line without leading space: {line!r}"
    if ascii_only:
        assert value.isascii(), value
        assert all(c == "\n" or 0x20 <= ord(c) < 0x7F or c == "\t" for c in value), value
    assert [k for k, _ in header_fields(name, value)] == [name]


def displayed(value: str) -> str:
    """What a mail reader shows for a Subject value."""
    return str(make_header(decode_header(value.replace("\n", ""))))


# --- namespace ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["X-OTPGuard-Verdict", "x-otpguard-symbols", "X-OTPGUARD-Anything", " X-OTPGuard-A"])
def test_own_header_names(name: str) -> None:
    assert is_own_header(name)


@pytest.mark.parametrize("name", ["X-OTPGuardVerdict", "X-Spam-Status", "Authentication-Results", "Subject"])
def test_other_header_names(name: str) -> None:
    assert not is_own_header(name)


# --- escaping and folding ------------------------------------------------------------------

def test_escape_removes_line_breaks_and_8bit() -> None:
    text = escape_text("evil\r\nBcc: victim@example.org\x00\x1b[31m é 日本 \U0001F600 \udcff")
    assert text == ("evil\\x0d\\x0aBcc: victim@example.org\\x00\\x1b\\[31m \\xe9 \\u65e5\\u672c "
                    "\\U0001f600 \\xff")
    assert text.isascii() and "\n" not in text and "\r" not in text


def test_escape_truncates_without_splitting_escapes() -> None:
    text = escape_text("日" * 100, limit=20)
    assert text == "\\u65e5" * 3 + "..."
    assert len(escape_text("a" * 500, limit=120)) <= 123


def test_fold_keeps_lines_short_and_unfolds_to_the_same_text() -> None:
    value = " ".join(f"WORD{i}(1.5) [reason number {i}]" for i in range(20))
    folded = fold(value, len(SYMBOLS))
    lines = folded.split("\n")
    assert len(lines) > 1
    assert len(SYMBOLS) + 2 + len(lines[0]) <= 78
    assert all(len(line) <= 78 for line in lines[1:])
    assert folded.replace("\n", "") == value  # RFC 5322 unfolding: remove the line breaks only


def test_safe_value_keeps_folds_and_neutralises_other_breaks() -> None:
    value = safe_value("otpguard;\n spf=pass smtp.mailfrom=a.example;\r\nX-Evil: 1; dkim=none \xe9")
    assert value == "otpguard;\n spf=pass smtp.mailfrom=a.example; X-Evil: 1; dkim=none \\xe9"
    assert_single_safe_field("Authentication-Results", value)


@pytest.mark.parametrize("score,text", [(12.5, "12.5"), (10.0, "10"), (0.0, "0"), (-0.0, "0"),
                                        (3.14159, "3.14"), (-1.25, "-1.25"), (1e-9, "0")])
def test_format_score(score: float, text: str) -> None:
    assert format_score(score) == text


def test_verdict_value() -> None:
    assert verdict_value("phish", 12.5) == "phish; score=12.5"
    assert verdict_value("clean", 0, genuine=True) == "clean; score=0; genuine=yes"
    assert verdict_value("clean", 0, analysed=False) == "clean; score=0; analysed=no"


def test_symbols_value_injection_and_bounds() -> None:
    hits = [("OTP_LURE", 2.5, "subject: 'code\r\nBcc: x@y'"),
            ("lower-case sym\n", 1.0, "display name \"Αmazοn\" \udce9"),
            ("BRAND", 3.0, "")]
    value = symbols_value(hits)
    assert value == ("OTP_LURE(2.5) [subject: 'code\\x0d\\x0aBcc: x@y']; "
                     "LOWER_CASE_SYM_(1) [display name \"\\u0391maz\\u03bfn\" \\xe9]; BRAND(3)")
    assert_single_safe_field(SYMBOLS, fold(value, len(SYMBOLS)))
    many = [(f"SYM_{i}", 1.0, "r" * 200) for i in range(100)]
    bounded = symbols_value(many)
    assert len(bounded) < 2200
    assert bounded.endswith("more)")
    assert symbols_value([]) == "none"


def test_japanese_reasons_are_readable_encoded_words_and_homoglyphs_stay_visible() -> None:
    hits = [("OTP_LURE", 2.5, "subject: '【重要】Amazonアカウントの確認コード'\r\nBcc: x@y"),
            ("BRAND_HOMOGLYPH", 4.0, "display name \"Αmazοn ＡＭＡＺＯＮ\"")]
    value = fold(symbols_value(hits), len(SYMBOLS))
    assert_single_safe_field(SYMBOLS, value)
    shown = displayed(value)
    assert "OTP_LURE(2.5) [ subject: '【重要】Amazonアカウントの確認コード'\\x0d\\x0aBcc: x@y ]" in shown
    # Greek Alpha/omicron and fullwidth Latin pass for ASCII: shown escaped, never as "Amazon".
    assert 'BRAND_HOMOGLYPH(4) [display name "\\u0391maz\\u03bfn \\uff21\\uff2d' in shown
    assert all(len(line) <= 78 for line in (SYMBOLS + ": " + value).split("\n"))


@pytest.mark.parametrize("text", ["ａｍａｚｏｎ", "𝐚𝐦𝐚𝐳𝐨𝐧", "Ａmazon", "x²", "a\u3164b", "a\u2800b", "a\u034fb", "․"])
def test_reasons_never_show_text_that_passes_for_ascii_or_vanishes(text: str) -> None:
    assert escape_text(text, keep_letters=True).isascii()


def test_attacker_encoded_words_in_a_reason_are_not_decoded() -> None:
    fake = "=?UTF-8?B?XTsgR0VOVUlORSgwKSBb?="  # "]; GENUINE(0) [" once decoded
    value = symbols_value([("OTP_LURE", 2.0, f"subject: {fake}")])
    assert "GENUINE" not in displayed(value)
    assert "=?" not in value


@given(st.lists(st.tuples(st.text(max_size=40), st.floats(allow_nan=False, allow_infinity=False, width=32),
                          st.text(max_size=300)), max_size=40))
@settings(max_examples=200, deadline=None)
def test_symbols_value_is_always_one_safe_field(hits: list[tuple[str, float, str]]) -> None:
    assert_single_safe_field(SYMBOLS, fold(symbols_value(hits), len(SYMBOLS)))


# --- subject -----------------------------------------------------------------------------

def test_ascii_prefix_on_plain_subject() -> None:
    assert rewrite_subject("Your order", "[SUSPICIOUS]") == "[SUSPICIOUS] Your order"


def test_prefix_added_only_once() -> None:
    once = rewrite_subject("Your order", "[SUSPICIOUS]")
    assert once is not None
    assert rewrite_subject(once, "[SUSPICIOUS]") is None
    ja = rewrite_subject("=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=", JA_PREFIX)
    assert ja is not None and rewrite_subject(ja, JA_PREFIX) is None
    assert subject_has_prefix(ja, JA_PREFIX)


@pytest.mark.parametrize("prefix", ["[PHISHING]", JA_PREFIX])
@pytest.mark.parametrize("charset", ["iso-2022-jp", "utf-8", "shift_jis"])
def test_encoded_japanese_subject_keeps_its_text(prefix: str, charset: str) -> None:
    text = "Amazon.co.jp にご登録のアカウント（名前、パスワード、その他個人情報）の確認"
    original = Header(text, charset).encode()
    new = rewrite_subject(original, prefix)
    assert new is not None
    assert displayed(new) == f"{prefix} {text}"
    assert_single_safe_field("Subject", new)


def test_corpus_style_folded_shift_jis_subject() -> None:
    original = ("=?shift_jis?B?QW1hem9uLmNvLmpwIILJgrKTb5hegsyDQYNK?=\n\t"
                "=?shift_jis?B?g0WDk4NngWmWvJFPgUGDcINYg4+BW4NogUGCu4LMkbyMwpBsj+6V8Q==?=")
    new = rewrite_subject(original, JA_PREFIX)
    assert new is not None
    assert displayed(new) == f"{JA_PREFIX} {displayed(original)}"
    assert_single_safe_field("Subject", new)


def test_non_ascii_prefix_before_plain_text() -> None:
    new = rewrite_subject("Your order has shipped", JA_PREFIX)
    assert new is not None and new.isascii()
    assert displayed(new) == f"{JA_PREFIX} Your order has shipped"


def test_raw_utf8_subject_is_kept_and_prefixed() -> None:
    new = rewrite_subject("ご注文の確認", "[SUSPICIOUS]")
    assert new == "[SUSPICIOUS] ご注文の確認"


def test_undecodable_8bit_subject_becomes_valid_encoded_words() -> None:
    raw = b"Gr\xfc\xdfe \xff".decode("utf-8", "surrogateescape")  # Latin-1 bytes, not UTF-8
    new = rewrite_subject(raw, "[SUSPICIOUS]")
    assert new is not None and new.isascii()
    assert displayed(new) == "[SUSPICIOUS] Gr\ufffd\ufffde \ufffd"
    assert_single_safe_field("Subject", new)


def test_encoded_crlf_in_subject_stays_encoded() -> None:
    original = "=?utf-8?q?Hello=0D=0ABcc=3A_victim=40example=2Eorg?="
    new = rewrite_subject(original, "[PHISHING]")
    assert new == "[PHISHING] " + original
    assert_single_safe_field("Subject", new)
    assert [k for k, _ in header_fields("Subject", new)] == ["Subject"]


def test_bare_line_breaks_in_subject_cannot_start_a_header() -> None:
    new = rewrite_subject("Hello\nBcc: victim@example.org\r\nX-Evil: 1", "[PHISHING]")
    assert new is not None
    assert_single_safe_field("Subject", new, ascii_only=False)


def test_missing_or_empty_subject() -> None:
    assert rewrite_subject(None, "[PHISHING]") == "[PHISHING]"
    assert displayed(rewrite_subject(None, JA_PREFIX) or "") == JA_PREFIX
    assert rewrite_subject("", "[PHISHING]") == "[PHISHING]"
    assert rewrite_subject("anything", "") is None
    assert rewrite_subject("anything", " \r\n ") is None


def test_control_characters_in_configured_prefix_are_dropped() -> None:
    assert rewrite_subject("x", "[WARN\r\nBcc: a@b]") == "[WARNBcc: a@b] x"


def test_long_non_ascii_prefix_is_split_into_short_encoded_words() -> None:
    words = encoded_words("警告" * 30)
    assert len(words) > 1 and all(len(w) <= 75 for w in words)
    assert displayed(" ".join(words)) == "警告" * 30


def test_decode_subject_tolerates_garbage() -> None:
    assert decode_subject("=?unknown-charset?B?AAAA?= x") is not None
    assert decode_subject("plain") == "plain"


subject_texts = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=80)


@given(text=subject_texts, charset=st.sampled_from(["utf-8", "iso-2022-jp", "iso-8859-1"]),
       prefix=st.sampled_from(["[PHISHING]", JA_PREFIX, "[SUSPICIOUS?]"]))
@settings(max_examples=300, deadline=None)
def test_rewrite_keeps_any_encoded_subject_decodable(text: str, charset: str, prefix: str) -> None:
    try:
        original = Header(text, charset).encode()
    except (UnicodeEncodeError, UnicodeError):
        original = Header(text, "utf-8").encode()
    before = displayed(original)
    new = rewrite_subject(original, prefix)
    if before.lstrip().startswith(prefix):
        assert new is None
        return
    assert new is not None
    assert_single_safe_field("Subject", new)
    after = displayed(new)
    assert after.startswith(prefix)
    assert after[len(prefix):].strip() == before.strip()


@given(st.text(max_size=120))
@settings(max_examples=300, deadline=None)
def test_rewrite_never_injects_a_header(value: str) -> None:
    new = rewrite_subject(value, "[PHISHING]")
    if new is not None:
        assert_single_safe_field("Subject", new, ascii_only=False)


def test_burst_value() -> None:
    assert burst_value(3, "Change your password") == "count=3; Change your password"
    ja = burst_value(4, "複数のコードが要求されました")
    assert ja.isascii() and displayed(ja) == "count=4; 複数のコードが要求されました"
    assert_single_safe_field("X-OTPGuard-Burst", burst_value(3, "a\r\nBcc: x " * 40))


def test_constants() -> None:
    assert VERDICT == "X-OTPGuard-Verdict" and SYMBOLS == "X-OTPGuard-Symbols"
