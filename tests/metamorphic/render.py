"""What the reader sees but a naive filter does not: the techniques of "read mail as the reader
sees it". Each transform keeps what the reader sees (the words, the sender, the call to
action) and changes only how it is written: junk hidden inside the brand and lure words by CSS,
Unicode that renders as the same words, MIME shapes clients display the same way, the lure
moved into an attachment the reader opens, hrefs a browser follows as the same URL.

Transforms that need HTML first make the message HTML-only (as phishers send it): a text/plain
alternative beside the HTML is dropped, a plain-text message becomes HTML of the same text with
its URLs as links. Every dev phish must stay at its level.
"""
from __future__ import annotations

import base64
import email.encoders
import html as html_lib
import random
import re
from collections.abc import Callable
from email.message import EmailMessage, Message
from email.mime.application import MIMEApplication

from . import transform
from .messages import POLICY, _text_of, displayed_parts, dump, edit_text, load, set_text, strip_mbox

# Words whose letters the tricks go after: the brand, and what lures say (en, ja, fr, de...).
BRAND_WORDS = ("Amazon", "amazon", "AMAZON", "アマゾン", "Prime", "Audible", "Kindle")
LURE_WORDS = (
    "account", "Account", "password", "Password", "security", "Security", "verify", "Verify", "verification",
    "payment", "Payment", "suspended", "locked", "sign-in", "Sign-in", "signin", "login", "Login", "unusual",
    "update", "Update", "confirm", "Confirm", "billing", "code", "Code", "unauthorized", "restricted",
    "compte", "paiement", "Konto", "Zahlung", "cuenta", "pago",
    "アカウント", "パスワード", "ログイン", "セキュリティ", "確認", "認証", "支払", "停止", "制限", "不正", "更新", "本人",
)
_WORD_RE = re.compile("|".join(sorted((re.escape(w) for w in BRAND_WORDS + LURE_WORDS), key=len, reverse=True)))
_JA_WORDS = ("アカウント", "パスワード", "ログイン", "セキュリティ", "確認", "認証", "支払", "停止", "制限", "不正",
             "更新", "本人", "アマゾン", "お客様", "情報")
_TAG_SPLIT = re.compile(r"(<!--.*?-->|<[^>]*>)", re.S)
_RAW_ELEMENTS = re.compile(r"(?is)<(style|script|title|head)\b.*?</\1\s*>")
WordEdit = Callable[[str], str]

# --- tools --------------------------------------------------------------------------------------


def _edit_html_text(doc: str, fn: Callable[[str], str]) -> str:
    """Apply fn to the text between tags only (never inside tags, comments, style, script, head)."""
    out: list[str] = []
    pos = 0
    for m in _RAW_ELEMENTS.finditer(doc):
        out.append(_edit_segments(doc[pos:m.start()], fn))
        out.append(m.group(0))
        pos = m.end()
    out.append(_edit_segments(doc[pos:], fn))
    return "".join(out)


def _edit_segments(chunk: str, fn: Callable[[str], str]) -> str:
    pieces = _TAG_SPLIT.split(chunk)
    return "".join(p if i % 2 else fn(p) for i, p in enumerate(pieces))


def _words(text: str, edit: WordEdit) -> str:
    """Every brand and lure word in text, rewritten by edit."""
    return _WORD_RE.sub(lambda m: edit(m.group(0)), text)


def _html_words(edit: WordEdit) -> Callable[[str], str]:
    """An HTML edit that rewrites brand and lure words in the text (entities left as they are)."""
    return lambda doc: _edit_html_text(doc, lambda t: _words(t, edit))


def _split(word: str) -> tuple[str, str]:
    mid = max(1, len(word) // 2)
    return word[:mid], word[mid:]


def _add_style(doc: str, css: str) -> str:
    style = f"<style type=\"text/css\">{css}</style>"
    m = re.search(r"(?i)</head\s*>", doc)
    if m:
        return doc[:m.start()] + style + doc[m.start():]
    m = re.search(r"(?i)<body[^>]*>", doc)
    return doc[:m.end()] + style + doc[m.end():] if m else style + doc


_URL_IN_TEXT = re.compile(r"(?:https?://|www\.)[^\s<>\"')\]]+", re.I)


def _plain_to_html(text: str) -> str:
    """A plain-text body as the same text in HTML, URLs as links (what a client shows)."""
    out, pos = [], 0
    for m in _URL_IN_TEXT.finditer(text):
        out.append(html_lib.escape(text[pos:m.start()]))
        url = m.group(0).rstrip(".,;:!?")
        href = url if url.lower().startswith("http") else "http://" + url
        out.append(f'<a href="{html_lib.escape(href)}">{html_lib.escape(url)}</a>{html_lib.escape(m.group(0)[len(url):])}')
        pos = m.end()
    out.append(html_lib.escape(text[pos:]))
    return ("<html><head></head><body><div style=\"white-space:pre-wrap;font-family:sans-serif\">" + "".join(out)
            + "</div></body></html>")


def html_only(raw: bytes) -> EmailMessage | None:
    """The message as an HTML-only mail: text/plain alternatives beside HTML dropped, a
    plain-text-only body turned into HTML of the same text."""
    try:
        msg = load(raw)
    except Exception:  # noqa: BLE001
        return None
    try:
        for part in msg.walk():
            if part.get_content_type() == "multipart/alternative":
                kids = part.get_payload()
                if isinstance(kids, list) and any(k.get_content_type() == "text/html" or k.is_multipart() for k in kids):
                    keep = [k for k in kids if k.get_content_type() != "text/plain"]
                    if keep:
                        part.set_payload(keep)
        shown = displayed_parts(msg)
        if not shown:
            return None
        if not any(p.get_content_type() == "text/html" for p in shown):
            for part in shown:
                text = _text_of(part)
                if text is None:
                    return None
                set_text(part, _plain_to_html(text))
                part.set_type("text/html")
                part.set_param("charset", "utf-8")
        return msg
    except Exception:  # noqa: BLE001
        return None


def edit_html(raw: bytes, fn: Callable[[str], str], *, must_change: bool = True) -> bytes | None:
    """Make the message HTML-only, then apply fn to each displayed HTML part."""
    msg = html_only(raw)
    if msg is None:
        return None
    try:
        html = dump(msg)
    except Exception:  # noqa: BLE001
        return None
    out = edit_text(html, html=fn)
    return out if out is not None or must_change else html


def edit_everywhere(raw: bytes, edit: WordEdit) -> bytes | None:
    """Rewrite the brand and lure words in the subject, the display name and every displayed part."""
    try:
        msg = load(raw)
        changed = False
        subject = str(msg["Subject"] or "")
        if subject and (new := _words(subject, edit)) != subject:
            del msg["Subject"]
            msg["Subject"] = new
            changed = True
        if msg["From"] is not None and msg["From"].addresses:
            addr = msg["From"].addresses[0]
            if addr.display_name and (new := _words(addr.display_name, edit)) != addr.display_name:
                del msg["From"]
                msg["From"] = email.utils.formataddr((new, addr.addr_spec))
                changed = True
        for part in displayed_parts(msg):
            text = _text_of(part)
            if text is None:
                continue
            if part.get_content_type() == "text/html":
                new = _edit_html_text(text, lambda t: _words(t, edit))
            else:
                new = _words(text, edit)
            if new != text:
                set_text(part, new)
                changed = True
        return dump(msg) if changed else None
    except Exception:  # noqa: BLE001
        return None


# --- hidden by CSS ----------------------------------------------------------------------------

def _junk(rng: random.Random) -> str:
    return "".join(rng.choice("qxzjkvw") for _ in range(rng.randint(2, 4)))


def _css_junk(raw: bytes, rng: random.Random, wrap: Callable[[str], str], css: str = "") -> bytes | None:
    def word(w: str) -> str:
        a, b = _split(w)
        return f"{a}{wrap(_junk(rng))}{b}"

    def fn(doc: str) -> str:
        new = _edit_html_text(doc, lambda t: _words(t, word))
        return _add_style(new, css) if css and new != doc else new

    return edit_html(raw, fn)


@transform("css-class-hidden-junk", applies_to=("phish",))
def css_class_hidden_junk(raw: bytes, rng: random.Random) -> bytes | None:
    """Junk letters inside the brand and lure words, hidden by a <style> class rule
    (.x{display:none}): the reader sees the words whole."""
    return _css_junk(raw, rng, lambda j: f'<span class="zq7">{j}</span>', ".zq7{display:none}")


@transform("css-id-attribute-hidden-junk", applies_to=("phish",))
def css_id_attribute_hidden_junk(raw: bytes, rng: random.Random) -> bytes | None:
    """Junk inside words hidden by rules on an attribute and an id ([data-x] {visibility:hidden},
    font-size:0 by an id-and-descendant rule)."""
    css = "span[data-f]{visibility:hidden;position:absolute} #w7 b{font-size:0}"
    out = _css_junk(raw, rng, lambda j: f'<span data-f="1">{j}</span>', css)
    if out is None:
        return None
    return edit_html(out, lambda d: re.sub(r"(?i)<body([^>]*)>", r'<body\1><div id="w7">', d, count=1), must_change=False)


@transform("white-text-junk", applies_to=("phish",))
def white_text_junk(raw: bytes, rng: random.Random) -> bytes | None:
    """Junk inside words written in the colour of the background (white on white)."""
    return _css_junk(raw, rng, lambda j: f'<font color="#ffffff"><span style="background-color:#ffffff">{j}</span></font>')


@transform("tiny-text-junk", applies_to=("phish",))
def tiny_text_junk(raw: bytes, rng: random.Random) -> bytes | None:
    """Junk inside words at font-size 1px and font:0/0 (a dot at most)."""
    return _css_junk(raw, rng, lambda j: f'<span style="font-size:1px">{j[:1]}</span><span style="font:0/0 a">{j[1:]}</span>')


@transform("opacity-junk", applies_to=("phish",))
def opacity_junk(raw: bytes, rng: random.Random) -> bytes | None:
    """Junk inside words with opacity:0."""
    return _css_junk(raw, rng, lambda j: f'<span style="opacity:0">{j}</span>')


@transform("zero-box-junk", applies_to=("phish",))
def zero_box_junk(raw: bytes, rng: random.Random) -> bytes | None:
    """Junk inside words in a zero-size box with overflow hidden, and off-screen."""
    return _css_junk(raw, rng, lambda j: f'<span style="display:inline-block;width:0;height:0;overflow:hidden">{j}</span>'
                     f'<span style="position:absolute;left:-9999px">{j}</span>')


@transform("hidden-attribute-junk", applies_to=("phish",))
def hidden_attribute_junk(raw: bytes, rng: random.Random) -> bytes | None:
    """Junk inside words in elements with the `hidden` attribute."""
    return _css_junk(raw, rng, lambda j: f"<span hidden>{j}</span>")


@transform("display-inline-splits", applies_to=("phish",))
def display_inline_splits(raw: bytes, rng: random.Random) -> bytes | None:
    """Words split across block elements made inline (<div style="display:inline">): one word
    on screen, two lines to a filter that ends a line at every div. Paragraphs become divs
    first (a div cannot sit in a <p>, for browsers as for us)."""
    def word(w: str) -> str:
        a, b = _split(w)
        return f'<div style="display:inline">{a}</div><div style="display:inline">{b}</div>'

    def fn(doc: str) -> str:
        doc = re.sub(r"(?i)<(/?)p(?=[\s>])", r"<\1div", doc)
        return _edit_html_text(doc, lambda t: _words(t, word))

    return edit_html(raw, fn)


@transform("before-content", applies_to=("phish",))
def before_content(raw: bytes, rng: random.Random) -> bytes | None:
    """The first letters of each word moved into CSS generated content (::before): the reader
    sees the word, the document holds only its end."""
    rules: dict[str, str] = {}

    def word(w: str) -> str:
        a, b = _split(w)
        cls = rules.setdefault(a, f"g{len(rules)}")
        return f'<span class="{cls}"></span>{b}'

    def fn(doc: str) -> str:
        new = _edit_html_text(doc, lambda t: _words(t, word))
        css = " ".join(f'.{c}::before{{content:"{a}"}}' for a, c in rules.items())
        return _add_style(new, css) if rules else new

    return edit_html(raw, fn)


@transform("ruby-junk", applies_to=("phish",))
def ruby_junk(raw: bytes, rng: random.Random) -> bytes | None:
    """Junk as ruby annotations (<rt>) over a letter inside the words: small print above the
    word; the word itself reads whole."""
    def word(w: str) -> str:
        a, b = _split(w)
        return f"{a[:-1]}<ruby>{a[-1]}<rp>(</rp><rt>{_junk(rng)}</rt><rp>)</rp></ruby>{b}"

    return edit_html(raw, _html_words(word))


# --- Unicode as read ----------------------------------------------------------------------------

def _brand_only(edit: WordEdit) -> WordEdit:
    return lambda w: edit(w) if w in BRAND_WORDS else w


@transform("variation-selectors", applies_to=("phish",))
def variation_selectors(raw: bytes, rng: random.Random) -> bytes | None:
    """A variation selector after each letter of the brand (U+FE0F, U+E0100) and of the lure
    words, in the display name, subject and body: invisible, but no longer the same string."""
    sel = rng.choice(["\ufe0f", "\U000e0100", "\ufe0e"])
    return edit_everywhere(raw, lambda w: "".join(c + sel for c in w))


@transform("invisible-format-characters", applies_to=("phish",))
def invisible_format_characters(raw: bytes, rng: random.Random) -> bytes | None:
    """Format characters inside the words (musical-symbol beams U+1D173-1D17A, the Mongolian
    vowel separator, tag characters): they render as nothing."""
    chars = ["\U0001d173", "\U0001d175", "\u180e", "\U000e0020", "\u2064"]
    return edit_everywhere(raw, lambda w: rng.choice(chars).join(w))


@transform("braille-blank-spacing", applies_to=("phish",))
def braille_blank_spacing(raw: bytes, rng: random.Random) -> bytes | None:
    """The brand spelt with braille blanks (U+2800) between its letters: "A⠀m⠀a⠀z⠀o⠀n" reads as
    the letter-spaced name."""
    return edit_everywhere(raw, _brand_only(lambda w: "\u2800".join(w) + "\u2002"))


@transform("rtl-override-reversed", applies_to=("phish",))
def rtl_override_reversed(raw: bytes, rng: random.Random) -> bytes | None:
    """The brand and lure words stored backwards inside a right-to-left override (U+202E ...
    U+202C): the reader sees them forwards."""
    return edit_everywhere(raw, lambda w: "\u202e" + w[::-1] + "\u202c")


@transform("combining-accents", applies_to=("phish",))
def combining_accents(raw: bytes, rng: random.Random) -> bytes | None:
    """A combining accent on letters of the brand and lure words ("Ámázón"): read as the same
    words."""
    marks = ["\u0301", "\u0300", "\u0308", "\u0302"]

    def edit(w: str) -> str:
        return "".join(c + (rng.choice(marks) if c.isascii() and c.isalpha() and i % 2 == 0 else "") for i, c in enumerate(w))

    return edit_everywhere(raw, edit)


@transform("letter-spacing", applies_to=("phish",))
def letter_spacing(raw: bytes, rng: random.Random) -> bytes | None:
    """The brand and the Latin lure words letter-spaced ("A m a z o n"): read as the words."""
    def edit(w: str) -> str:
        # An en space after the word: the gap between spaced words is wider than inside them.
        return " ".join(w) + "\u2002" if w.isascii() and "-" not in w else w

    return edit_everywhere(raw, edit)


@transform("japanese-line-break", applies_to=("phish",))
def japanese_line_break(raw: bytes, rng: random.Random) -> bytes | None:
    """A line break in the middle of Japanese words (本人\\n確認, ログ<br>イン): a reader reads the
    word across the line end."""
    ja = re.compile("|".join(map(re.escape, _JA_WORDS)))

    def plain(t: str) -> str:
        return ja.sub(lambda m: "\n".join(_split(m.group(0))), t)

    def html(doc: str) -> str:
        return _edit_html_text(doc, lambda t: ja.sub(lambda m: "<br>".join(_split(m.group(0))), t))

    return edit_text(raw, plain=plain, html=html)


@transform("katakana-lookalikes", applies_to=("phish",))
def katakana_lookalikes(raw: bytes, rng: random.Random) -> bytes | None:
    """Katakana written with the kanji that look the same (ロ/口, カ/力, エ/工, ニ/二, タ/夕, ハ/八):
    ログイン as 口グイン, カード as 力ード."""
    table = str.maketrans({"ロ": "口", "カ": "力", "エ": "工", "ニ": "二", "タ": "夕", "ハ": "八"})
    kata = re.compile(r"[\u30a1-\u30fa\u30fc]{2,}")

    def swap(t: str) -> str:
        return kata.sub(lambda m: m.group(0).translate(table), t)

    try:
        msg = load(raw)
    except Exception:  # noqa: BLE001
        return None
    subject = str(msg["Subject"] or "")
    out = edit_text(raw, plain=swap, html=lambda d: _edit_html_text(d, swap))
    if out is None:
        return None
    if subject and swap(subject) != subject:
        try:
            m2 = load(out)
            del m2["Subject"]
            m2["Subject"] = swap(subject)
            out = dump(m2)
        except Exception:  # noqa: BLE001
            pass
    return out


# --- MIME as clients show it ----------------------------------------------------------------------

def _body_part(msg: EmailMessage) -> Message:
    """The message's body as a part of its own (its Content-* fields and payload)."""
    part = Message()
    for name, value in msg.items():
        if name.lower().startswith("content-"):
            part[name] = value
    if part.get("content-type") is None:
        part["Content-Type"] = "text/plain; charset=us-ascii"
    part.set_payload(msg.get_payload())
    if msg.is_multipart():
        part.set_boundary(msg.get_boundary() or "b-inner")
    return part


def _rewrap(raw: bytes, subtype: str, before: list[Message], after: list[Message] | None = None,
            boundary: str | None = None) -> bytes | None:
    """The message with its body moved into a new multipart/<subtype> beside other parts."""
    try:
        msg = load(raw)
        body = _body_part(msg)
        for name in [k for k in msg.keys() if k.lower().startswith("content-")]:
            del msg[name]
        msg["Content-Type"] = f'multipart/{subtype}; boundary="{boundary or "=-render-outer"}"'
        msg.set_payload(before + [body] + (after or []))
        return dump(msg)
    except Exception:  # noqa: BLE001
        return None


def _text_part(text: str, subtype: str = "plain", disposition: str | None = None) -> Message:
    part = Message()
    part["Content-Type"] = f"text/{subtype}; charset=utf-8"
    part["Content-Transfer-Encoding"] = "base64"
    if disposition:
        part["Content-Disposition"] = disposition
    part.set_payload(base64.encodebytes(text.encode("utf-8")).decode("ascii"))
    return part


# Sizes of the MIME tricks: each beyond the shipped limit it attacks (max_text_chars 400,000,
# max_parts 200, max_parse_bytes 4 MiB). The golden fixtures use smaller ones with smaller limits.
HARMLESS_CHARS = 500_000
TINY_ALTERNATIVES = 250
BIG_ATTACHMENT_BYTES = 5 * 1024 * 1024
NESTING = 30

_HARMLESS = ("Thank you for being a valued customer. Our opening hours are nine to five on weekdays. "
             "You can find our terms and conditions on our web site. ")


@transform("large-harmless-part-first", applies_to=("phish",))
def large_harmless_part_first(raw: bytes, rng: random.Random) -> bytes | None:
    """A long harmless inline text part (HARMLESS_CHARS, 500,000 characters) before the lure: the text budget
    spent before the lure is reached."""
    return _rewrap(raw, "mixed", [_text_part(_HARMLESS * (HARMLESS_CHARS // len(_HARMLESS)))])


@transform("many-tiny-alternatives", applies_to=("phish",))
def many_tiny_alternatives(raw: bytes, rng: random.Random) -> bytes | None:
    """250 tiny text/plain alternatives before the real body: a client shows the last (the
    richest); a filter that stops at a part count never reaches it."""
    return _rewrap(raw, "alternative", [_text_part(f"Hello {i}.") for i in range(TINY_ALTERNATIVES)])


@transform("deep-nesting", applies_to=("phish",))
def deep_nesting(raw: bytes, rng: random.Random) -> bytes | None:
    """The body nested 30 multipart/mixed levels deep: clients display it all the same."""
    out = raw
    for i in range(NESTING):
        out = _rewrap(out, "mixed", [], boundary=f"=-nest-{i}")
        if out is None:
            return None
    return out


@transform("big-attachment-first", applies_to=("phish",))
def big_attachment_first(raw: bytes, rng: random.Random) -> bytes | None:
    """A 5 MB attachment before the body: a filter that reads only the first 4 MB of a message
    never sees the lure after it."""
    blob = MIMEApplication(bytes(rng.getrandbits(8) for _ in range(4096)) * (BIG_ATTACHMENT_BYTES // 4096), "octet-stream")
    blob.add_header("Content-Disposition", "attachment", filename="statement-archive.bin")
    return _rewrap(raw, "mixed", [blob])


@transform("base64-padding-in-the-middle", applies_to=("phish",))
def base64_padding_in_the_middle(raw: bytes, rng: random.Random) -> bytes | None:
    """Each displayed part base64-encoded in two padded pieces ("...==" in the middle): some
    decoders stop at the first padding, mail clients go on."""
    try:
        msg = load(raw)
        changed = False
        for part in displayed_parts(msg):
            text = _text_of(part)
            if text is None or len(text) < 8:
                continue
            data = text.encode("utf-8")
            cut = len(data) // 2
            cut -= cut % 3
            cut += 1  # never a multiple of 3: the first piece ends in padding
            encoded = base64.b64encode(data[:cut]).decode() + base64.b64encode(data[cut:]).decode()
            subtype = part.get_content_subtype()
            del part["Content-Transfer-Encoding"]
            part.set_payload("\r\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76)) + "\r\n")
            part.set_type(f"text/{subtype}")
            part.set_param("charset", "utf-8")
            part["Content-Transfer-Encoding"] = "base64"
            changed = True
        return dump(msg) if changed else None
    except Exception:  # noqa: BLE001
        return None


def _multipart(raw: bytes) -> bytes | None:
    try:
        if load(raw).is_multipart():
            return raw
    except Exception:  # noqa: BLE001
        return None
    return _rewrap(raw, "mixed", [])


_CT_LINE = re.compile(rb"(?im)^content-type:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*")


@transform("second-boundary-parameter", applies_to=("phish",))
def second_boundary_parameter(raw: bytes, rng: random.Random) -> bytes | None:
    """A decoy boundary parameter before the real one (boundary="decoy"; boundary="real") and
    a harmless decoy part in the preamble: readers that keep the last parameter see the lure."""
    out = _multipart(raw)
    if out is None:
        return None
    msg = load(out)
    real = msg.get_boundary()
    head, sep, body = out.partition(b"\r\n\r\n")
    m = _CT_LINE.search(head)
    if not real or not m or not sep:
        return None
    field = b'Content-Type: multipart/mixed; boundary="zz-decoy-7"; boundary="' + real.encode() + b'"'
    decoy = b"--zz-decoy-7\r\nContent-Type: text/plain\r\n\r\nHello, see you soon.\r\n--zz-decoy-7--\r\n"
    return head[:m.start()] + field + head[m.end():] + sep + decoy + body


@transform("second-content-type-field", applies_to=("phish",))
def second_content_type_field(raw: bytes, rng: random.Random) -> bytes | None:
    """A second Content-Type field before the real one (text/plain): readers that keep the last
    field show the lure; a filter keeping the first reads encoded noise."""
    out = _multipart(raw)
    if out is None:
        return None
    head, sep, body = out.partition(b"\r\n\r\n")
    if not sep:
        return None
    return b"Content-Type: text/plain; charset=us-ascii\r\n" + head + sep + body


@transform("utf7-body", applies_to=("phish",))
def utf7_body(raw: bytes, rng: random.Random) -> bytes | None:
    """The displayed parts in UTF-7 (RFC 2152; Outlook still shows it): non-ASCII words become
    +base64- runs to a reader that ignores the label."""
    try:
        msg = load(raw)
        changed = False
        for part in displayed_parts(msg):
            text = _text_of(part)
            if text is None:
                continue
            subtype = part.get_content_subtype()
            del part["Content-Transfer-Encoding"]
            # Line by line, as a UTF-7 encoder writes it: a line end closes a shifted run.
            part.set_payload("\r\n".join(line.encode("utf-7").decode("ascii") for line in text.splitlines()))
            part.set_type(f"text/{subtype}")
            part.set_param("charset", "utf-7")
            part["Content-Transfer-Encoding"] = "7bit"
            changed = True
        return dump(msg) if changed else None
    except Exception:  # noqa: BLE001
        return None


@transform("lure-forwarded-as-rfc822", applies_to=("phish",))
def lure_forwarded_as_rfc822(raw: bytes, rng: random.Random) -> bytes | None:
    """The phisher's own mail carries the lure as an attached message (message/rfc822, shown
    inline): same sender and subject outside, the whole lure inside."""
    try:
        outer = load(raw)
        inner = load(raw)
        wrapper = _same_header(outer)
        wrapper.set_content("Please read the message below.\n")
        wrapper.add_attachment(inner, disposition="inline")
        return dump(wrapper)
    except Exception:  # noqa: BLE001
        return None


# --- the lure moved into an attachment the reader opens ------------------------------------------

_NOTE = "Please open the attached document for details.\n"


def _lure_of(raw: bytes) -> tuple[str, list[str]] | None:
    """(visible text, link targets) of the message's displayed parts, roughly."""
    from otpguard.core.html import parse_html

    try:
        msg = load(raw)
    except Exception:  # noqa: BLE001
        return None
    texts, links = [], []
    shown = displayed_parts(msg)
    if any(p.get_content_type() == "text/html" for p in shown):
        shown = [p for p in shown if p.get_content_type() == "text/html"]  # the alternative a client shows
    for part in shown:
        text = _text_of(part)
        if text is None:
            continue
        if part.get_content_type() == "text/html":
            parsed = parse_html(text, 50)
            texts.append(parsed.text)
            links += [link.href for link in parsed.links if link.href.lower().startswith("http")]
        else:
            texts.append(text)
            links += [m.group(0) for m in _URL_IN_TEXT.finditer(text)]
    text = "\n".join(texts).strip()
    return (text, links) if text else None


def _same_header(msg: Message) -> EmailMessage:
    """A new message with every header field of msg but its body's (Content-*, MIME-Version)."""
    wrapper = EmailMessage(policy=POLICY)
    for name, value in msg.raw_items():  # as written: decoding and encoding again changes them
        if not name.lower().startswith(("content-", "mime-version")):
            wrapper.set_raw(name, value)
    wrapper["MIME-Version"] = "1.0"
    return wrapper


def _with_attachment(raw: bytes, part: Message, note: str = _NOTE) -> bytes | None:
    """The message with its body replaced by a short note and the attachment (its other
    attachments kept)."""
    try:
        msg = load(raw)
        kept = [p for p in msg.walk() if not p.is_multipart()
                and "attachment" in str(p.get("Content-Disposition", "")).lower()]
        wrapper = _same_header(msg)
        wrapper.set_content(note)
        wrapper.make_mixed()
        wrapper.attach(part)
        for other in kept:
            wrapper.attach(other)
        return dump(wrapper)
    except Exception:  # noqa: BLE001
        return None


def _attachment(data: bytes, ctype: str, filename: str) -> Message:
    maintype, subtype = ctype.split("/", 1)
    part = MIMEApplication(data, subtype) if maintype == "application" else Message()
    if maintype != "application":
        part["Content-Type"] = ctype
        part.set_payload(data)
        email.encoders.encode_base64(part)
    part.add_header("Content-Disposition", "attachment", filename=filename)
    return part


def svg_document(text: str, links: list[str]) -> bytes:
    lines = [line for line in text.splitlines() if line.strip()][:80]
    body = "".join(f'<text x="10" y="{20 + 18 * i}">{html_lib.escape(line)}</text>' for i, line in enumerate(lines))
    anchors = "".join(f'<a xlink:href="{html_lib.escape(u)}"><text x="10" y="{40 + 18 * len(lines)}">Open</text></a>'
                      for u in links[:3])
    return ('<?xml version="1.0" encoding="UTF-8"?><svg xmlns="http://www.w3.org/2000/svg" '
            f'xmlns:xlink="http://www.w3.org/1999/xlink" width="800" height="{80 + 18 * len(lines)}">'
            f'{body}{anchors}<script>/* nothing */</script></svg>').encode("utf-8")


def xhtml_document(text: str, links: list[str]) -> bytes:
    paras = "".join(f"<p>{html_lib.escape(line)}</p>" for line in text.splitlines() if line.strip())
    anchors = "".join(f'<p><a href="{html_lib.escape(u)}">Continue</a></p>' for u in links[:3])
    return ('<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE html><html xmlns="http://www.w3.org/1999/xhtml">'
            f"<head><title>Notice</title></head><body>{paras}{anchors}</body></html>").encode("utf-8")


def redirect_document(target: str) -> bytes:
    t = html_lib.escape(target)
    return (f'<html><head><meta http-equiv="refresh" content="0; url={t}"><title>Loading</title></head><body>'
            f'<script>window.location.href = "{target}";</script>Loading...</body></html>').encode("utf-8")


@transform("lure-in-svg-attachment", applies_to=("phish",))
def lure_in_svg_attachment(raw: bytes, rng: random.Random) -> bytes | None:
    """The lure's text and links moved into an SVG attachment (opened in a browser)."""
    lure = _lure_of(raw)
    if lure is None:
        return None
    return _with_attachment(raw, _attachment(svg_document(*lure), "image/svg+xml", "notice.svg"))


@transform("lure-in-xhtml-attachment", applies_to=("phish",))
def lure_in_xhtml_attachment(raw: bytes, rng: random.Random) -> bytes | None:
    """The lure's text and links moved into an XHTML attachment."""
    lure = _lure_of(raw)
    if lure is None:
        return None
    return _with_attachment(raw, _attachment(xhtml_document(*lure), "application/xhtml+xml", "notice.xhtml"))


@transform("link-in-redirecting-html-attachment", applies_to=("phish",))
def link_in_redirecting_html_attachment(raw: bytes, rng: random.Random) -> bytes | None:
    """The text stays; the link leaves the body for an HTML attachment that redirects to it by
    meta refresh and script ("open the attachment to continue")."""
    lure = _lure_of(raw)
    if lure is None or not lure[1]:
        return None
    text = _URL_IN_TEXT.sub("", lure[0]) + "\n\nOpen the attached file to continue.\n"
    return _with_attachment(raw, _attachment(redirect_document(lure[1][0]), "text/html", "continue.html"), note=text)


def pdf_document(text: str, links: list[str], *, user_password: str | None = "") -> bytes:
    """A one-page PDF holding text (any script: an Identity-H font whose ToUnicode map is the
    identity) and link annotations; encrypted with the user password when one is given ("" is
    the empty password every reader opens without asking)."""
    from pypdf import PdfWriter
    from pypdf.generic import (ArrayObject, DecodedStreamObject, DictionaryObject, FloatObject, NameObject,
                               NumberObject, TextStringObject)

    writer = PdfWriter()
    page = writer.add_blank_page(width=612, height=792)
    cmap = (b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /Identity-UCS def "
            b"/CMapType 2 def 1 begincodespacerange <0000> <FFFF> endcodespacerange 1 beginbfrange "
            b"<0000> <FFFF> <0000> endbfrange endcmap CMapName currentdict /CMap defineresource pop end end")
    to_unicode = DecodedStreamObject()
    to_unicode.set_data(cmap)
    descendant = DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/CIDFontType2"),
        NameObject("/BaseFont"): NameObject("/Anyfont"),
        NameObject("/CIDSystemInfo"): DictionaryObject({NameObject("/Registry"): TextStringObject("Adobe"),
                                                        NameObject("/Ordering"): TextStringObject("Identity"),
                                                        NameObject("/Supplement"): NumberObject(0)}),
        NameObject("/DW"): NumberObject(1000)})
    font = DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type0"),
        NameObject("/BaseFont"): NameObject("/Anyfont"), NameObject("/Encoding"): NameObject("/Identity-H"),
        NameObject("/DescendantFonts"): ArrayObject([writer._add_object(descendant)]),
        NameObject("/ToUnicode"): writer._add_object(to_unicode)})
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject(
        {NameObject("/F1"): writer._add_object(font)})})
    ops = [b"BT /F1 11 Tf 40 750 Td 14 TL"]
    for line in [x for x in text.splitlines() if x.strip()][:50]:
        units = "".join(c for c in line if ord(c) <= 0xFFFF)
        ops.append(b"<" + units.encode("utf-16-be").hex().encode() + b"> Tj T*")
    ops.append(b"ET")
    content = DecodedStreamObject()
    content.set_data(b"\n".join(ops))
    page[NameObject("/Contents")] = writer._add_object(content)
    annots = ArrayObject()
    for i, url in enumerate(links[:3]):
        annots.append(writer._add_object(DictionaryObject({
            NameObject("/Type"): NameObject("/Annot"), NameObject("/Subtype"): NameObject("/Link"),
            NameObject("/Rect"): ArrayObject([FloatObject(40), FloatObject(40 + 30 * i), FloatObject(300),
                                              FloatObject(60 + 30 * i)]),
            NameObject("/Border"): ArrayObject([NumberObject(0), NumberObject(0), NumberObject(0)]),
            NameObject("/A"): DictionaryObject({NameObject("/S"): NameObject("/URI"),
                                                NameObject("/URI"): TextStringObject(url)})})))
    if annots:
        page[NameObject("/Annots")] = annots
    if user_password is not None:
        writer.encrypt(user_password=user_password, owner_password="owner-secret-7", algorithm="AES-128")
    import io

    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


@transform("lure-in-pdf-empty-password", applies_to=("phish",))
def lure_in_pdf_empty_password(raw: bytes, rng: random.Random) -> bytes | None:
    """The lure's text and links moved into a PDF encrypted with an empty user password: every
    PDF reader opens it without asking, a filter that skips encrypted PDFs reads nothing."""
    lure = _lure_of(raw)
    if lure is None:
        return None
    return _with_attachment(raw, _attachment(pdf_document(*lure), "application/pdf", "statement.pdf"))


# --- hrefs a browser follows -----------------------------------------------------------------

_HREF = re.compile(r"""(?i)(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?)://([^"'/\\?#]+)([^"']*)\2""")


def _edit_hrefs(raw: bytes, fn: Callable[[str, str, str], str | None]) -> bytes | None:
    """Rewrite each absolute http(s) href of the HTML: fn(scheme, host, rest) -> new href."""
    def doc_fn(doc: str) -> str:
        def sub(m: re.Match[str]) -> str:
            new = fn(m.group(3), m.group(4), m.group(5))
            return m.group(0) if new is None else f"{m.group(1)}{m.group(2)}{new}{m.group(2)}"
        return _HREF.sub(sub, doc)

    return edit_html(raw, doc_fn)


def _foreign(host: str) -> bool:
    h = host.lower()
    return not re.search(r"(?:^|\.)amazon\.(?:com|co\.jp|co\.uk|de|fr|es|it|ca|com\.au|in)$|(?:^|\.)media-amazon\.com$", h)


@transform("href-scheme-without-slashes", applies_to=("phish",))
def href_scheme_without_slashes(raw: bytes, rng: random.Random) -> bytes | None:
    """href="https:evil.example/x": browsers read it as https://evil.example/x."""
    return _edit_hrefs(raw, lambda s, h, r: f"{s}:{h}{r}")


@transform("href-backslashes", applies_to=("phish",))
def href_backslashes(raw: bytes, rng: random.Random) -> bytes | None:
    """href="https:\\\\evil.example\\x": browsers read backslashes as slashes in http(s) URLs."""
    return _edit_hrefs(raw, lambda s, h, r: f"{s}:\\\\{h}{r.replace('/', chr(92))}")


@transform("href-tab-in-scheme", applies_to=("phish",))
def href_tab_in_scheme(raw: bytes, rng: random.Random) -> bytes | None:
    """A tab and a newline inside the scheme (ht&#9;tps): browsers remove them."""
    return _edit_hrefs(raw, lambda s, h, r: f"{s[:2]}&#9;{s[2:]}&#10;://{h}{r}")


@transform("href-hex-and-decimal-ip", applies_to=("phish",))
def href_hex_and_decimal_ip(raw: bytes, rng: random.Random) -> bytes | None:
    """The phishing host moved to a bare IPv4 address written in hex or as one integer
    (http://0xC6336410/, http://3325256720/): a browser goes there, a filter expecting dotted
    quads sees no IP."""
    forms = ["0xC6336410", "3325256720", "0306.0x33.100.16", "0xc6.51.0x64.020"]
    return _edit_hrefs(raw, lambda s, h, r: f"http://{rng.choice(forms)}{r}" if _foreign(h) else None)


@transform("relative-links-under-base", applies_to=("phish",))
def relative_links_under_base(raw: bytes, rng: random.Random) -> bytes | None:
    """<base href> set to the phishing site and its links made relative: browsers resolve them
    against the base."""
    hosts: dict[str, int] = {}

    def count(s: str, h: str, r: str) -> None:
        if _foreign(h):
            hosts[f"{s}://{h}"] = hosts.get(f"{s}://{h}", 0) + 1
        return None

    if _edit_hrefs(raw, count) is None and not hosts:
        return None
    if not hosts:
        return None
    base = max(hosts, key=hosts.get)
    out = _edit_hrefs(raw, lambda s, h, r: (r.lstrip("/") or "./") if f"{s}://{h}" == base else None)
    if out is None:
        return None
    return edit_html(out, lambda d: _add_base(d, base + "/"), must_change=False)


def _add_base(doc: str, base: str) -> str:
    tag = f'<base href="{html_lib.escape(base)}">'
    m = re.search(r"(?i)<head[^>]*>", doc)
    if m:
        return doc[:m.end()] + tag + doc[m.end():]
    return tag + doc


_ANCHOR = re.compile(r"""(?is)<a\b[^>]*?\bhref\s*=\s*(["'])(https?://[^"']+)\1[^>]*>(.*?)</a>""")


@transform("outlook-vml-button", applies_to=("phish",))
def outlook_vml_button(raw: bytes, rng: random.Random) -> bytes | None:
    """The links become Outlook VML buttons in conditional comments (<v:roundrect href=...>):
    Outlook's reader sees a button; other readers see the button's words."""
    def fn(doc: str) -> str:
        def sub(m: re.Match[str]) -> str:
            href, inner = m.group(2), m.group(3)
            return (f'<!--[if mso]><v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" href="{href}" '
                    f'style="height:40px;width:200px" arcsize="10%" fillcolor="#f90"><center>{inner}</center>'
                    f"</v:roundrect><![endif]--><!--[if !mso]><!--><span>{inner}</span><!--<![endif]-->")
        return _ANCHOR.sub(sub, doc)

    return edit_html(raw, fn)


@transform("bare-host-names", applies_to=("phish",))
def bare_host_names(raw: bytes, rng: random.Random) -> bytes | None:
    """Links written as bare host names without a scheme ("secure-login.example/verify"), as
    text: mail clients make them links."""
    def fn(doc: str) -> str:
        def sub(m: re.Match[str]) -> str:
            href = m.group(2)
            bare = re.sub(r"(?i)^https?://", "", href)
            return f"{m.group(3)} {html_lib.escape(bare)}"
        return _ANCHOR.sub(sub, doc)

    return edit_html(raw, fn)


__all__ = ["html_only", "pdf_document", "redirect_document", "strip_mbox", "svg_document", "xhtml_document"]
