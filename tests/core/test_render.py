"""Read mail as the reader sees it: one golden .eml per technique (tests/fixtures/render, written
by its generate.py from two base lures through the transforms of tests/metamorphic/render.py),
each still phish and each read the way a client shows it; then the reading layer's parts one
by one (CSS visibility, Unicode as read, MIME as shown, attachments, URLs as browsers parse
them, QR codes, limits)."""
from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest

from otpguard.core.domains import is_ip
from otpguard.core.html import parse_html
from otpguard.core.message import Link
from otpguard.core.model import Envelope, Level
from otpguard.core.normalize import clean, evidence, skeleton
from otpguard.core.parse import inline_forwards, parse_message
from otpguard.core.settings import AnalysisConfig
from otpguard.core.urls import bare_links, resolve
from otpguard.engine import Engine

pytestmark = pytest.mark.verdict

RENDER = Path(__file__).resolve().parents[1] / "fixtures" / "render"
FIXTURES = sorted(p.stem for p in RENDER.glob("*.eml") if not p.stem.startswith("base-"))
PHISH_URL = "https://amazon-verify-login.top/signin"
JA_URL = "https://amazon-jp-kakunin.top/ap/signin"
# The generator scales the MIME tricks down; the limits they attack are scaled the same way.
GOLDEN_LIMITS = dict(max_text_chars=20_000, max_parts=40, max_parse_bytes=200_000)


@pytest.fixture(scope="module")
def golden_engine(config) -> Engine:
    cfg = replace(config, auth=replace(config.auth, verify=False),
                  analysis=replace(config.analysis, **GOLDEN_LIMITS))
    return Engine(cfg, verify=False)


def _limits() -> AnalysisConfig:
    return AnalysisConfig(**GOLDEN_LIMITS)


def _read(name: str):
    return parse_message((RENDER / f"{name}.eml").read_bytes(), _limits())


def _hrefs(msg, source: str | None = None) -> set[str]:
    return {link.href for link in msg.links if source is None or link.source == source}


def test_every_technique_has_its_fixture():
    from metamorphic import load_all

    render = {n for n, t in load_all().items() if t.rewrite.__module__.endswith(".render")}
    assert render == set(FIXTURES)


@pytest.mark.parametrize("name", ["base-en", "base-ja"] + FIXTURES)
def test_each_technique_keeps_the_lure_at_phish_level(golden_engine, name):
    d = golden_engine.analyse((RENDER / f"{name}.eml").read_bytes(), Envelope())
    assert d.level is Level.PHISH, [(h.symbol, h.score, h.reason) for h in d.hits]


# What each technique must read as: the words whole, and the evidence of the trick.
_EN_WORDS = ("amazon account", "account has been locked", "unusual sign-in activity")


def _words_read(msg) -> bool:
    body = skeleton(clean(msg.text))
    return all(w in body for w in _EN_WORDS)


@pytest.mark.parametrize("name", ["css-class-hidden-junk", "css-id-attribute-hidden-junk", "white-text-junk",
                                  "tiny-text-junk", "opacity-junk", "zero-box-junk", "hidden-attribute-junk"])
def test_junk_hidden_inside_words_is_out_of_the_text_and_is_evidence(name):
    msg = _read(name)
    assert _words_read(msg), msg.text
    assert any(e.startswith("text hidden inside") for e in msg.obfuscation), msg.obfuscation


def test_block_elements_made_inline_split_no_word():
    msg = _read("display-inline-splits")
    assert _words_read(msg), msg.text


def test_before_content_is_text_the_reader_sees():
    msg = _read("before-content")
    assert _words_read(msg), msg.text
    assert any("CSS-generated text inside" in e for e in msg.obfuscation)


def test_ruby_annotations_are_not_part_of_the_word():
    msg = _read("ruby-junk")
    assert _words_read(msg), msg.text
    assert any("ruby annotations inside" in e for e in msg.obfuscation)


@pytest.mark.parametrize("name,trick", [("variation-selectors", "variation selectors inside"),
                                        ("invisible-format-characters", "invisible characters inside"),
                                        ("rtl-override-reversed", "override"),
                                        ("combining-accents", "combining marks"),
                                        ("braille-blank-spacing", "blank"),
                                        ("letter-spacing", None)])
def test_unicode_tricks_read_as_the_words_in_display_name_subject_and_body(name, trick):
    msg = _read(name)
    assert "amazon" in skeleton(clean(msg.subject)), msg.subject
    assert "amazon" in skeleton(clean(msg.from_[0].display)), msg.from_[0].display
    assert "amazon" in skeleton(clean(msg.text))
    if trick:
        assert any(trick in e for e in msg.obfuscation), msg.obfuscation


def test_a_line_break_inside_a_japanese_word_and_kanji_for_katakana_read_as_the_word():
    assert "本人確認" in clean(_read("japanese-line-break").text)
    body = clean(_read("katakana-lookalikes").text)
    assert "ログイン" in body and "アカウント" in body


def test_the_displayed_part_keeps_its_share_after_a_large_harmless_part():
    msg = _read("large-harmless-part-first")
    assert _words_read(msg)
    assert any(r.startswith("text budget") for r in msg.limits)


def test_the_shown_alternative_is_read_first_among_many():
    msg = _read("many-tiny-alternatives")
    assert _words_read(msg) and PHISH_URL in _hrefs(msg)
    assert any("MIME parts" in r for r in msg.limits)


def test_displayed_parts_below_max_depth_are_read():
    msg = _read("deep-nesting")
    assert _words_read(msg) and PHISH_URL in _hrefs(msg)


def test_a_big_attachment_first_does_not_push_the_lure_out(golden_engine):
    raw = (RENDER / "big-attachment-first.eml").read_bytes()
    assert len(raw) > GOLDEN_LIMITS["max_parse_bytes"]
    d = golden_engine.analyse(raw, Envelope())
    assert d.level is Level.PHISH
    assert "ANALYSIS_LIMIT_REACHED" in {h.symbol for h in d.hits}


def test_base64_padded_in_the_middle_is_read_to_its_end():
    msg = _read("base64-padding-in-the-middle")
    assert _words_read(msg) and PHISH_URL in _hrefs(msg)
    assert any("base64 padding" in d for d in msg.defects)


@pytest.mark.parametrize("name,defect", [("second-boundary-parameter", "two boundary parameters"),
                                         ("second-content-type-field", "two Content-Type fields")])
def test_ambiguous_structure_is_read_every_plausible_way(name, defect):
    msg = _read(name)
    assert _words_read(msg) and PHISH_URL in _hrefs(msg)
    assert any(defect in d for d in msg.defects)


def test_utf7_body_is_decoded_by_its_label():
    msg = _read("utf7-body")
    assert _words_read(msg) and "UTF-7 body" in msg.defects


def test_an_attached_message_is_read_as_a_message():
    msg = _read("lure-forwarded-as-rfc822")
    assert _words_read(msg)
    assert [(i.kind, i.from_[0].display, i.subject) for i in msg.inner_messages] == [
        ("rfc822", "Amazon", "Your Amazon account has been locked")]


@pytest.mark.parametrize("name", ["lure-in-svg-attachment", "lure-in-xhtml-attachment", "lure-in-pdf-empty-password"])
def test_the_lure_moved_into_an_attachment_is_read_with_its_links(name):
    msg = _read(name)
    text = skeleton(clean(msg.attachment_text))
    assert "amazon account" in text and "locked" in text, msg.attachment_text[:300]
    assert PHISH_URL in _hrefs(msg, "attachment")


def test_a_pdf_with_an_empty_user_password_is_opened_and_noted():
    msg = _read("lure-in-pdf-empty-password")
    assert any("empty user password" in d for d in msg.defects)


def test_a_redirecting_html_attachment_yields_its_target():
    msg = _read("link-in-redirecting-html-attachment")
    assert PHISH_URL in _hrefs(msg, "meta-refresh") and PHISH_URL in _hrefs(msg, "script")


@pytest.mark.parametrize("name,want", [("href-scheme-without-slashes", PHISH_URL), ("href-backslashes", PHISH_URL),
                                       ("href-tab-in-scheme", PHISH_URL), ("relative-links-under-base", PHISH_URL),
                                       ("outlook-vml-button", PHISH_URL), ("bare-host-names", "http://amazon-verify-login.top/signin")])
def test_hrefs_are_what_a_browser_follows(name, want):
    assert want in _hrefs(_read(name))


def test_hex_and_integer_ipv4_hosts_are_read_as_the_address():
    hosts = {h for h in _hrefs(_read("href-hex-and-decimal-ip")) if h.startswith("http://198.51.100.16/")}
    assert hosts


# --- CSS visibility, one property at a time ------------------------------------------------------

def _visible(body: str, style: str = "") -> str:
    head = f"<style>{style}</style>" if style else ""
    return " ".join(parse_html(f"<html><head>{head}</head><body>{body}</body></html>", 100).text.split())


@pytest.mark.parametrize("junk", [
    '<span style="display:none">x</span>', '<span style="visibility:hidden">x</span>',
    '<span style="font-size:0">x</span>', '<span style="font-size:0.5px">x</span>', '<span style="font:0/0 a">x</span>',
    '<span style="opacity:0.01">x</span>', '<span style="color:#fff">x</span>', '<span style="color:#fefefe">x</span>',
    '<span style="color:rgba(0,0,0,0)">x</span>', '<font color="white">x</font>',
    '<span style="display:inline-block;width:1px;overflow:hidden">x</span>',
    '<span style="display:inline-block;max-height:0;overflow:hidden">x</span>',
    '<span style="position:absolute;left:-10000px">x</span>', '<span style="position:absolute;clip:rect(0 0 0 0)">x</span>',
    '<span style="text-indent:-9999px;display:inline-block">x</span>', '<span style="transform:scale(0)">x</span>',
    '<span hidden>x</span>', '<span class="h">x</span>', '<span id="h">x</span>', '<span data-h="1">x</span>',
    '<span style="clip-path:inset(50%)">x</span>',
])
def test_hidden_text_inside_a_word_is_not_read(junk):
    style = ".h{display:none} #h{visibility:hidden} span[data-h]{font-size:0}"
    assert _visible(f"<p>Ama{junk}zon</p>", style) == "Amazon"


@pytest.mark.parametrize("shown", [
    '<span style="color:#333">x</span>', '<span style="font-size:12px">x</span>', '<span style="opacity:0.9">x</span>',
    '<span style="width:0">x</span>',  # no overflow hidden: the text overflows into view
    '<span class="m">x</span>',  # hidden only inside @media: conditional, read
    '<span style="visibility:hidden"><b style="visibility:visible">x</b></span>',
    '<span style="font-size:0"><b style="font-size:14px">x</b></span>',
    '<span style="color:#fff;background:#000">x</span>',
    '<span class="u">x</span>',  # a more specific rule shows it again
])
def test_visible_text_stays(shown):
    style = "@media (max-width:600px){.m{display:none}} span.u{display:inline} .u{display:none}"
    assert _visible(f"<p>Ama{shown}zon</p>", style) == "Amaxzon"


def test_important_declarations_win_over_inline_style():
    assert _visible('<p>Ama<span class="h" style="display:inline">x</span>zon</p>', ".h{display:none!important}") == "Amazon"


def test_pseudo_elements_add_their_content():
    html = '<p>A<span class="a"></span>on</p>'
    assert _visible(html, '.a::before{content:"ma"} .a::after{content:"z"}') == "Amazon"


def test_colour_against_a_coloured_background_is_judged_on_that_background():
    body = ('<table bgcolor="#000000"><tr><td style="color:#eee">Ama<font color="#000">x</font>zon '
            '<span style="color:#fff">shown</span></td></tr></table>')
    assert _visible(body) == "Amazon shown"
    # Black on black, but the black text is only the default colour: not judged.
    assert _visible('<table bgcolor="#000"><tr><td>kept</td></tr></table>') == "kept"


def test_hidden_preheaders_are_not_evidence_but_hidden_letters_are():
    pre = parse_html('<div style="display:none">Your code is ready</div><p>Hello</p>', 10)
    assert pre.obfuscation == [] and "Your code" not in pre.text
    split = parse_html('<p>Ama<span style="display:none">q</span>zon acc<span style="display:none">q</span>ount</p>', 10)
    assert split.obfuscation == ["text hidden inside 2 word(s) (display:none)"]


def test_japanese_furigana_is_dropped_without_counting_as_evidence():
    r = parse_html("<p><ruby>本人<rt>ほんにん</rt></ruby>確認</p>", 10)
    assert "本人確認" in r.text and r.obfuscation == []


def test_title_images_and_every_kind_of_link_are_read():
    html = ('<html><head><title>Amazon Sign-In</title><base href="https://phish.example.net/a/">'
            '<meta http-equiv="refresh" content="5; URL=\'https://refresh.example.net/\'"></head><body>'
            '<a href="login"><img src="logo.png" alt="Amazon" title="Amazon logo"></a>'
            '<map><area href="https://area.example.net/" alt="x"></map>'
            '<button onclick="window.location.href=\'https://click.example.net/\'">Go</button>'
            '<form action="post.php"><input type="password"></form>'
            '<!--[if mso]><v:roundrect href="https://vml.example.net/">Verify</v:roundrect><![endif]-->'
            "</body></html>")
    r = parse_html(html, 100)
    assert r.title == "Amazon Sign-In"
    got = {(link.href, link.source) for link in r.links}
    assert {("https://phish.example.net/a/login", "html"), ("https://area.example.net/", "area"),
            ("https://click.example.net/", "script"), ("https://refresh.example.net/", "meta-refresh"),
            ("https://phish.example.net/a/post.php", "form"), ("https://vml.example.net/", "vml")} <= got
    assert [(i.src, i.alt, i.title, i.href) for i in r.images] == [
        ("https://phish.example.net/a/logo.png", "Amazon", "Amazon logo", "https://phish.example.net/a/login")]
    assert r.forms[0].action == "https://phish.example.net/a/post.php" and r.forms[0].has_password


def test_scripts_of_a_mail_body_are_not_links_but_those_of_an_opened_page_are():
    html = '<script>location.replace("https://run.example.net/")</script><p>x</p>'
    assert parse_html(html, 10).links == []
    assert [link.href for link in parse_html(html, 10, page=True).links] == ["https://run.example.net/"]


# --- Unicode as read -----------------------------------------------------------------------------

@pytest.mark.parametrize("written,read", [
    ("A\ufe0fm\ufe0fa\ufe0fz\ufe0fo\ufe0fn", "amazon"), ("A\U000e0100m\U000e0100azon", "amazon"),
    ("Am\U0001d173az\U0001d17aon", "amazon"), ("Ama\u2064zon", "amazon"), ("A\u2800m\u2800a\u2800z\u2800o\u2800n", "amazon"),
    ("\u202enozamA\u202c", "amazon"), ("A m a z o n  account", "amazon account"), ("Ámázón", "amazon"),
    ("A\u0301ma\u0308zon", "amazon"), ("ＡＭＡＺＯＮ", "amazon"),
])
def test_the_brand_written_with_unicode_tricks_reads_as_the_brand(written, read):
    assert skeleton(clean(written)) == read


@pytest.mark.parametrize("written,read", [("本人\n確認", "本人確認"), ("本 人 確 認", "本人確認"), ("口グイン", "ログイン"),
                                          ("力ード", "カード"), ("パスワ一ド", "パスワード"), ("工ラー", "エラー"),
                                          ("入力", "入力"), ("一ヶ月", "一ヶ月"), ("二つ", "二つ"), ("一ポイント", "一ポイント")])
def test_japanese_is_read_across_line_ends_and_kanji_pass_for_katakana_only_beside_katakana(written, read):
    assert clean(written) == read


def test_accents_stay_for_the_lure_vocabulary_and_fold_for_the_brand():
    assert clean("Vérifiez votre compte") == "vérifiez votre compte"
    assert skeleton(clean("Vérifiez")) == "verifiez"


def test_numbers_and_ordinary_rtl_text_are_left_alone():
    assert clean("1 2 3 4 5") == "1 2 3 4 5"
    assert clean("שלום עולם") == "שלום עולם"
    assert evidence("سلام\u200cعلیکم", "body") == []  # ZWNJ is ordinary inside Persian words


def test_bidi_of_a_megabyte_stays_bounded():
    import time

    text = ("\u202etnuocca nozamA ruoy\u202c " * 40_000)[:1_000_000]
    start = time.monotonic()
    out = clean(text)
    assert time.monotonic() - start < 10.0 and "your amazon account" in out


# --- MIME as clients show it -----------------------------------------------------------------------

def _mime(*parts: str, subtype: str = "mixed") -> bytes:
    body = "".join(f"--b\r\n{p}\r\n" for p in parts)
    return (f"From: a@b.example\r\nSubject: t\r\nContent-Type: multipart/{subtype}; boundary=b\r\n\r\n"
            f"{body}--b--\r\n").encode()


def test_the_shown_alternative_is_read_before_the_others():
    raw = _mime("Content-Type: text/plain\r\n\r\nplain words", "Content-Type: text/html\r\n\r\n<p>html words</p>",
                subtype="alternative")
    assert parse_message(raw, AnalysisConfig()).text.split() == ["html", "words", "plain", "words"]


def test_inline_forwards_are_inner_messages():
    text = ("FYI\n\n---------- Forwarded message ---------\nFrom: Amazon <security@amazon-check.example>\n"
            "Date: Mon, 1 Dec 2025\nSubject: Your account is locked\nTo: <me@example.org>\n\nbody")
    (inner,) = inline_forwards(text)
    assert (inner.kind, inner.from_[0].domain, inner.subject) == ("inline-forward", "amazon-check.example",
                                                                   "Your account is locked")
    ja = "-----Original Message-----\n差出人: Amazon.co.jp <a@b.example>\n件名: 本人確認\n"
    assert [(i.from_[0].display, i.subject) for i in inline_forwards(ja)] == [("Amazon.co.jp", "本人確認")]


def test_a_message_over_the_size_cap_is_analysed_on_its_header_and_displayed_parts(config):
    eng = Engine(replace(config, auth=replace(config.auth, verify=False),
                         analysis=replace(config.analysis, max_message_bytes=400_000, max_parse_bytes=200_000)),
                 verify=False)
    lure = (RENDER / "big-attachment-first.eml").read_bytes()
    assert len(lure) > 300_000
    d = eng.analyse(lure + b"\r\n" + b"x" * 200_000, Envelope())  # over max_message_bytes
    assert d.level is Level.PHISH and "NOT_ANALYSED" in {h.symbol for h in d.hits}


def test_limits_reached_count_only_in_mail_that_claims_the_brand(golden_engine):
    plain = _mime(*(f"Content-Type: text/plain\r\n\r\nhello {i}" for i in range(60)))
    d = golden_engine.analyse(plain, Envelope())
    assert d.level is Level.CLEAN and d.score == 0


# --- URLs as browsers parse them -----------------------------------------------------------------

@pytest.mark.parametrize("href,url", [
    ("https:evil.example/x", "https://evil.example/x"), ("https:\\\\evil.example\\a\\b", "https://evil.example/a/b"),
    ("ht\ttps://evil.example", "https://evil.example/"), ("h\nttps://evil.example", "https://evil.example/"),
    ("http://0x7f.1/", "http://127.0.0.1/"), ("http://3232235777/", "http://192.168.1.1/"),
    ("http://0300.0250.0.1/", "http://192.168.0.1/"), ("//evil.example/p", "https://evil.example/p"),
    ("HTTPS://EVIL.example:443/a/../b", "https://evil.example/b"), ("http://аmazon.com/", "http://xn--mazon-3ve.com/"),
    ("mailto:a@b.example", "mailto:a@b.example"), ("login.php", "login.php"),
])
def test_hrefs_resolve_as_the_whatwg_url_standard_says(href, url):
    assert resolve(href) == url


def test_relative_hrefs_resolve_against_the_base():
    assert resolve("../x?y", "https://evil.example/a/b/") == "https://evil.example/a/x?y"


@pytest.mark.parametrize("host", ["0x7f.1", "3232235777", "0300.0250.0.1", "1.2.3.4", "0xC6336410", "[2001:db8::1]"])
def test_every_ipv4_form_a_browser_accepts_is_an_ip(host):
    assert is_ip(host)


def test_bare_host_names_ending_in_a_public_suffix_are_links():
    text = "Go to amazon-verify.top/login now; see invoice.pdf, e.g. v1.2.3 or me@mail.example.com."
    assert [link.href for link in bare_links(text, 10, set())] == ["http://amazon-verify.top/login"]


# --- QR codes ----------------------------------------------------------------------------------

def _qr_png(text: str, scale: int = 4) -> bytes:
    import zxingcpp
    from PIL import Image

    img = zxingcpp.write_barcode_to_image(zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode), scale=scale)
    height, width = memoryview(img).shape
    out = io.BytesIO()
    Image.frombytes("L", (width, height), bytes(memoryview(img))).save(out, "PNG")
    return out.getvalue()


_LURE = "Your Amazon account has been locked. Scan the code with your phone to verify your account."


def _with_picture(subject_from: str, picture: bytes, text: str = _LURE) -> bytes:
    import base64

    b64 = base64.encodebytes(picture).decode()
    return (f"From: {subject_from}\r\nSubject: Scan to verify\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            f"--b\r\nContent-Type: text/plain\r\n\r\n{text}\r\n"
            f"--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
            f"Content-Disposition: inline; filename=code.png\r\n\r\n{b64}\r\n--b--\r\n").encode()


def test_qr_codes_are_links_in_mail_that_claims_the_brand(engine):
    raw = _with_picture('"Amazon" <no-reply@account-notice-center.top>', _qr_png("https://qr-phish-login.top/verify"))
    from otpguard.core.qr import qr_links

    msg = parse_message(raw, AnalysisConfig())
    assert msg.pictures and "https://qr-phish-login.top/verify" not in _hrefs(msg)  # not decoded while parsing
    links, _ = qr_links(msg.pictures, 4, 4_000_000)
    assert links == [Link(href="https://qr-phish-login.top/verify", text="", source="qr")]
    d = engine.analyse(raw, Envelope())
    assert any("qr-phish-login.top" in h.reason for h in d.hits if h.symbol == "LINK_OFF_BRAND"), d.hits


def test_qr_codes_are_not_decoded_in_mail_that_claims_no_brand(engine, monkeypatch):
    import otpguard.engine as engine_module

    calls = []
    monkeypatch.setattr(engine_module, "qr_links", lambda *a: calls.append(a) or ([], []))
    engine.analyse(_with_picture("Bob <bob@example.org>", _qr_png("https://x.example.net/"), "Our menu for Friday."),
                   Envelope())
    assert calls == []
    engine.analyse(_with_picture('"Amazon" <n@account-notice-center.top>', _qr_png("https://x.example.net/")), Envelope())
    assert len(calls) == 1


def test_a_huge_picture_is_not_decoded_and_is_a_limit(engine):
    from PIL import Image

    from otpguard.core.qr import decode

    out = io.BytesIO()
    Image.new("1", (10_000, 10_000), 1).save(out, "PNG")
    texts, note = decode(out.getvalue(), 4_000_000)
    assert texts == [] and "10000x10000" in note
    d = engine.analyse(_with_picture('"Amazon" <n@account-notice-center.top>', out.getvalue()), Envelope())
    assert "ANALYSIS_LIMIT_REACHED" in {h.symbol for h in d.hits}


# --- hostile input stays bounded ---------------------------------------------------------------

def test_thousands_of_style_rules_and_deep_selector_chains_stay_bounded():
    import time

    rules = "".join(f".c{i} span.k{i} > b[data-x='{i}']{{display:none}}" for i in range(20_000))
    chain = " > ".join(["div"] * 3000) + "{display:none}"
    body = "<div>" * 500 + "Amazon" + "</div>" * 500 + "".join(f'<span class="c{i}">w</span>' for i in range(3000))
    start = time.monotonic()
    r = parse_html(f"<html><head><style>{rules}{chain}</style></head><body>{body}</body></html>", 100)
    assert time.monotonic() - start < 10.0
    assert "Amazon" in r.text
    # Where css-inline cannot apply a sheet, tinycss2 reads it within MAX_CSS_RULES, and says so.
    from otpguard.core import css

    sheet = css.parse_sheet([rules], 2000, 400_000)
    assert len(sheet.rules) == 2000 and "style rules" in sheet.limit


def test_simple_style_attributes_read_as_tinycss2_reads_them():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from otpguard.core import css

    pieces = st.sampled_from(["color", "COLOR", "display", "font-size", "font", "width", "x", "-x", "--v", "1a", ":", ";",
                              " ", "  ", "\t", "none", "0", "#fff", "12px", "!important", "'a;b'", "(", ")", "/*", "*/",
                              "\\", "é", "content", '"x"', "{", "}", ",", "0/0"])

    @settings(max_examples=3000, deadline=None)
    @given(st.lists(pieces, max_size=12).map("".join))
    def same(style: str) -> None:
        simple = css._simple_declarations(style)
        if simple is not None:
            assert simple == css._declarations(style)

    same()
