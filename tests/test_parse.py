"""Parsing: any real mail in, facts out, never an exception."""
from __future__ import annotations

import email.header
from email.utils import getaddresses

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import mail
from otpguard.config import AnalysisConfig
from otpguard.parse import decode_bytes, decode_header_value, host_of, parse_message, rtf_text, split_address

LIMITS = AnalysisConfig()


def test_iso_2022_jp_subject_display_name_and_body_are_decoded():
    msg = parse_message(mail("display_name_spoof_ja_iso2022jp.eml"), LIMITS)
    assert msg.subject == "【重要】Amazonアカウントの不正ログインについて"
    assert msg.from_[0].display == "Amazon.co.jp"
    assert msg.from_[0].domain == "shop-notice.example"
    assert "不正なログイン" in msg.text
    assert [link.href for link in msg.links] == ["https://amazon-co-jp.account-check.example/login"]


def test_shift_jis_8bit_body_and_header_are_decoded():
    msg = parse_message(mail("homoglyph_display_shift_jis.eml"), LIMITS)
    assert msg.subject == "アカウントのロックについて"
    assert "ロックされました" in msg.text
    assert msg.from_[0].display.startswith("\u0410mazon")  # Cyrillic A kept as sent


def test_euc_jp_labelled_gb2312_is_read_as_japanese(corpus):
    # Real lure: Japanese in EUC-JP with a gb2312 label (kana rows coincide in both charsets).
    msg = parse_message((corpus / "phish" / "034.eml").read_bytes(), LIMITS)
    assert msg.from_[0].display.startswith("Amazon顧客サービス")
    assert "プライム会員" in msg.text


def test_mislabelled_and_unknown_charsets_fall_back_without_error():
    assert decode_bytes("café".encode("utf-8"), "x-no-such-charset") == "café"
    assert decode_bytes("パスワードを変更してください".encode("euc-jp"), "gb2312") == "パスワードを変更してください"
    assert decode_bytes(b"\xff\xfe\x00broken", "utf-8")  # something readable, no exception
    assert decode_header_value("=?utf-8?b?!!!notbase64?=") is not None
    # Found by make fuzz: a NUL inside a charset label made codecs.lookup raise ValueError.
    assert decode_header_value("=?utf\x00-8?q?Amazon?=") is not None
    msg = parse_message(b'From: "=?utf\x00-8?q?Amazon?=" <a@b.example>\r\n\r\nhi', LIMITS)
    assert msg.from_[0].domain == "b.example"


def test_rfc2047_words_split_across_lines_join():
    value = email.header.Header("パスワードの再設定のお知らせ", "iso-2022-jp").encode()
    assert decode_header_value(value) == "パスワードの再設定のお知らせ"


def test_html_links_keep_their_visible_text_and_forms_are_seen():
    msg = parse_message(mail("link_text_mismatch.eml"), LIMITS)
    html_links = [(link.href, link.text) for link in msg.links if link.source == "html"]
    assert ("https://bit.ly/3xYzAbc", "https://www.amazon.com/your-account") in html_links
    assert msg.forms and msg.forms[0].has_password
    assert "<a" not in msg.text and "payment was declined" in msg.text


def test_hidden_filler_is_removed_from_visible_text():
    raw = (b"From: a@b.example\r\nContent-Type: text/html\r\n\r\n"
           b"<p>Ama<span style='display:none'>XQ7Z</span>zon Pri<span style=\"font-size:0px\">K9</span>me</p>")
    assert "Amazon Prime" in parse_message(raw, LIMITS).text


def test_pdf_attachment_text_is_extracted(corpus):
    msg = parse_message((corpus / "phish" / "038.eml").read_bytes(), LIMITS)
    assert any(a.filename.lower().endswith(".pdf") for a in msg.attachments)
    assert "amazon" in msg.attachment_text.lower()


def test_rtf_text_drops_control_words():
    assert rtf_text(rb"{\rtf1\ansi{\fonttbl{\f0 Arial;}}\f0 Your Amazon account is \b locked\b0 .\par}", 10000).strip() \
        == "Your Amazon account is locked."


def test_size_caps_bound_parts_and_links():
    limits = AnalysisConfig(max_links=5, max_parts=3, max_part_bytes=2048)
    links = "".join(f"<a href='http://x{i}.example/'>x</a>" for i in range(100))
    parts = "".join(f"--b\r\nContent-Type: text/html\r\n\r\n{links}\r\n" for _ in range(10))
    raw = f"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n{parts}--b--\r\n".encode()
    msg = parse_message(raw, limits)
    assert len(msg.links) <= 5
    assert "too many parts" in msg.defects


def test_deep_nesting_is_bounded_without_recursion_error():
    depth = 1000
    raw = b"From: a@b.example\r\n"
    for i in range(depth):
        raw += f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n".encode()
    raw += b"Content-Type: text/plain\r\n\r\nhello\r\n"
    msg = parse_message(raw, LIMITS)
    assert msg is not None


def test_mbox_from_line_is_not_a_header(corpus):
    raw = next((corpus / "traffic" / "easy_ham").iterdir()).read_bytes()
    assert raw.startswith(b"From ")
    msg = parse_message(raw, LIMITS)
    assert msg.headers[0][0] != "from " and msg.from_


def test_host_of_handles_userinfo_ports_and_ipv6():
    assert host_of("https://www.amazon.com@evil.example:8443/x") == "evil.example"
    assert host_of("http://[2001:db8::1]/login") == "2001:db8::1"
    assert host_of("www.Amazon.co.jp/gp") == "www.amazon.co.jp"
    assert host_of("mailto:a@b.example") == ""


# Specials, quoting, folding, controls and the whitespace str.split() knows but RFC 5322 not.
_ADDRESS_CHARS = list('aZé語.-_+ \t"<>@,;:()[]\\=?\'\r\n\x00\x1f\x7f\x85\x9f\xa0\u2028\u3000')


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_ADDRESS_CHARS), max_size=24).map("".join))
def test_address_fast_path_reads_any_value_as_the_stdlib_does(value: str) -> None:
    assert split_address(value) == getaddresses([value])


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet='aZé語. \t"-\xa0\u3000\x1f', max_size=10), st.booleans(),
       st.sampled_from(["<a@b.example>", " <a.b+c@d.example>", "a@b.example", "<a@b.example", "x@y>",
                        "\xa0<a@b.example>", "<a\xa0b@c.example>"]))
def test_address_fast_path_on_display_name_shapes(name: str, quoted: bool, addr: str) -> None:
    value = (f'"{name}"' if quoted else name) + addr
    assert split_address(value) == getaddresses([value])
