"""Who speaks: the brand claim moved between display name, subject, signature and logo; the
message forwarded (as an attachment, or inline) or copied by a mailing list; the lure's words
removed while its call to action stays. None of these changes who the mail pretends to be or
what it asks the reader to do."""
from __future__ import annotations

import html as html_lib
import random
import re

from . import transform
from .messages import (address, dump, edit_text, from_parts, html_to_sentences, load, set_header,
                       subject_of, wrap_rfc822)

_BRAND = re.compile(r"amazon|アマゾン|prime|audible|kindle", re.I)
GENERIC_DISPLAY = {"ja": "カスタマーサービス", "en": "Account Services"}
PERSON = "Taro Yamada <taro.yamada@mail.example.net>"


def _is_ja(raw: bytes) -> bool:
    text = subject_of(raw) + from_parts(raw)[0]
    return bool(re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", text))


def _brand_display(raw: bytes) -> tuple[str, str] | None:
    """(display, address) when the display name names the brand."""
    display, addr = from_parts(raw)
    return (display, addr) if display and _BRAND.search(display) and addr else None


def _generic_from(raw: bytes) -> bytes | None:
    found = _brand_display(raw)
    if found is None:
        return None
    generic = GENERIC_DISPLAY["ja" if _is_ja(raw) else "en"]
    return set_header(raw, "From", address(generic, found[1]))


@transform("claim-to-signature", applies_to=("phish",))
def claim_to_signature(raw: bytes, rng: random.Random) -> bytes | None:
    """The brand leaves the display name and signs the body instead ("Amazon.co.jp カスタマー
    サービス", "Amazon Customer Service"): the reader still reads a mail from Amazon."""
    moved = _generic_from(raw)
    if moved is None:
        return None
    sig = "Amazon.co.jp カスタマーサービス" if _is_ja(raw) else "Amazon Customer Service"
    return edit_text(moved, plain=lambda t: f"{t}\n\n{sig}\n",
                     html=lambda h: _append_html(h, f"<p>{html_lib.escape(sig)}</p>"))


@transform("claim-to-logo", applies_to=("phish",))
def claim_to_logo(raw: bytes, rng: random.Random) -> bytes | None:
    """The brand leaves the display name for a logo at the top of the HTML body (alt text and
    file name name it): what the reader sees first is the brand's logo."""
    moved = _generic_from(raw)
    if moved is None:
        return None
    logo = '<p><img src="https://cdn.mailassets.example.net/img/amazon-logo.png" alt="Amazon" width="120"></p>'
    return edit_text(moved, html=lambda h: _prepend_html(h, logo))


@transform("claim-to-subject", applies_to=("phish",))
def claim_to_subject(raw: bytes, rng: random.Random) -> bytes | None:
    """The brand leaves the display name for the subject ("Amazon: ...")."""
    moved = _generic_from(raw)
    if moved is None:
        return None
    subject = subject_of(raw)
    if _BRAND.search(subject):
        return None
    return set_header(moved, "Subject", f"Amazon.co.jp: {subject}" if _is_ja(raw) else f"Amazon: {subject}")


def _asks_something(raw: bytes) -> bool:
    """The message has a call to action of its own (a link other than a list footer's, a number to
    call, an attachment). Lures a mailing list stripped of their links ask nothing: their verdict
    rests on the trace of their original delivery, which a forward does not carry, and forwarded
    they are dead letters, not lures."""
    from otpguard.core.parse import parse_message
    from otpguard.core.settings import AnalysisConfig

    msg = parse_message(raw, AnalysisConfig())
    links = [link for link in msg.links if link.source != "bare" and not _LIST_FOOTER.search(link.href)
             and not _BRAND_HOST.search(link.href)]
    return bool(links or msg.attachments or msg.forms or _PHONE_LINE.search(msg.text))


@transform("forward-as-attachment")
def forward_as_attachment(raw: bytes, rng: random.Random) -> bytes | None:
    """A person forwards the mail as an attachment (message/rfc822), as clients do on "Forward as
    attachment": the inner message still speaks as it did (and asks what it asked: _asks_something)."""
    if not _asks_something(raw):
        return None
    try:
        return wrap_rfc822(raw, outer_from=PERSON, outer_to="hanako@example.org",
                           subject=f"Fwd: {subject_of(raw)}", note="FYI, see the attached message.\n")
    except Exception:  # noqa: BLE001 - a message the stdlib cannot nest is not transformed
        return None


@transform("forward-inline")
def forward_inline(raw: bytes, rng: random.Random) -> bytes | None:
    """A person forwards the mail inline, the way webmail does: their own From and "Fwd:"
    subject, the original's header block quoted above its text (see _asks_something)."""
    if not _asks_something(raw):
        return None
    display, addr = from_parts(raw)
    subject = subject_of(raw)
    block = (f"---------- Forwarded message ---------\nFrom: {address(display, addr)}\n"
             f"Date: Mon, 1 Dec 2025 09:00:00 +0900\nSubject: {subject}\nTo: <hanako@example.org>\n\n")
    out = edit_text(raw, plain=lambda t: block + t,
                    html=lambda h: _prepend_html(h, "<div>" + html_lib.escape(block).replace("\n", "<br>") + "</div>"))
    if out is None:
        return None
    try:
        msg = load(out)
        for name in ("From", "Subject", "Sender", "Reply-To", "Return-Path", "DKIM-Signature", "ARC-Seal",
                     "ARC-Message-Signature", "ARC-Authentication-Results", "Authentication-Results"):
            del msg[name]
        msg["From"] = PERSON
        msg["Subject"] = f"Fwd: {subject}"
        return dump(msg)
    except Exception:  # noqa: BLE001
        return None


@transform("list-copy")
def list_copy(raw: bytes, rng: random.Random) -> bytes | None:
    """A mailing list relays the mail: List-* fields, a footer, and (DMARC mitigation, as
    Mailman and Google Groups do) From rewritten to the list with the author in Reply-To."""
    display, addr = from_parts(raw)
    if not addr:
        return None
    footer = ("\n_______________________________________________\nDev mailing list -- dev@lists.example.org\n"
              "To unsubscribe send an email to dev-leave@lists.example.org\n")
    out = edit_text(raw, plain=lambda t: t + footer,
                    html=lambda h: _append_html(h, "<p>" + html_lib.escape(footer).replace("\n", "<br>") + "</p>"))
    if out is None:
        return None
    try:
        msg = load(out)
        for name in ("From", "Reply-To", "Sender", "List-Id", "List-Unsubscribe", "List-Post", "Precedence"):
            del msg[name]
        msg["From"] = address(f"{display or addr} via Dev", "dev@lists.example.org")
        msg["Reply-To"] = address(display, addr)
        msg["Sender"] = "dev-bounces@lists.example.org"
        msg["List-Id"] = "Dev discussion <dev.lists.example.org>"
        msg["List-Unsubscribe"] = "<mailto:dev-leave@lists.example.org>"
        msg["List-Post"] = "<mailto:dev@lists.example.org>"
        msg["Precedence"] = "list"
        return dump(msg)
    except Exception:  # noqa: BLE001
        return None


_ANCHOR = re.compile(r"(?is)<a\b[^>]*\bhref\s*=\s*[\"']?[^\"'\s>]+[^>]*>.*?</a>")
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"']+", re.I)
_PHONE_LINE = re.compile(r"(?im)^.*(?:call|phone|電話|appel|anruf|llam|chiam|ligue|致电|电话).*\+?\d[\d ().-]{7,}\d.*$")
_LIST_FOOTER = re.compile(r"(?i)mailman|listinfo|mailing list|lists\.")
# A link to the brand's own site asks nothing a forward could make suspect.
_BRAND_HOST = re.compile(r"(?i)^[a-z]+://(?:[\w-]+\.)*amazon\.(?:[a-z]{2,3}|co\.[a-z]{2}|com\.[a-z]{2})(?:[/:?#]|$)")


@transform("lure-words-removed", applies_to=("phish",))
def lure_words_removed(raw: bytes, rng: random.Random) -> bytes | None:
    """Every sentence is replaced by a neutral greeting; only the calls to action stay (links,
    buttons, lines with a phone number). Who the sender claims to be and what the reader is
    asked to do are unchanged. A message whose only links are a mailing list's footer has no
    call to action to keep: not transformed."""
    def ctas(text: str) -> list[str]:
        return [u for u in _URL.findall(text) if not _LIST_FOOTER.search(u)] + _PHONE_LINE.findall(text)

    def plain(text: str) -> str:
        kept = ctas(text)
        return "Hello,\n\nPlease see below.\n\n" + "\n".join(kept) + "\n" if kept else text

    def html(doc: str) -> str:
        anchors = [a for a in _ANCHOR.findall(doc) if not _LIST_FOOTER.search(a)]
        kept = anchors + [html_lib.escape(c) for c in ctas(html_to_sentences(_ANCHOR.sub(" ", doc)))]
        if not kept:
            return doc
        return "<html><body><p>Hello,</p><p>Please see below.</p>" + "".join(f"<p>{a}</p>" for a in kept) \
            + "</body></html>"

    return edit_text(raw, plain=plain, html=html)


def _prepend_html(doc: str, fragment: str) -> str:
    m = re.search(r"(?i)<body[^>]*>", doc)
    return doc[:m.end()] + fragment + doc[m.end():] if m else fragment + doc


def _append_html(doc: str, fragment: str) -> str:
    m = re.search(r"(?i)</body\s*>", doc)
    return doc[:m.start()] + fragment + doc[m.start():] if m else doc + fragment


__all__ = ["html_to_sentences"]
