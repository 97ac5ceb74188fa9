"""Tools the transforms share: read a message, edit the text of its displayed parts, set header
fields, wrap it in another message. Every edit re-encodes what it changed as UTF-8 (base64), as a
phisher's mailer would; what it did not change keeps its bytes."""
from __future__ import annotations

import email
import email.encoders
import email.policy
import re
from collections.abc import Callable
from email.message import EmailMessage, Message
from email.utils import formataddr

from otpguard.core.charset import decode_bytes

POLICY = email.policy.default.clone(linesep="\r\n", max_line_length=998, refold_source="none")
TextEdit = Callable[[str], str]


def strip_mbox(raw: bytes) -> bytes:
    if raw.startswith(b"From ") and b"\n" in raw[:1000]:
        return raw.split(b"\n", 1)[1]
    return raw


def load(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(strip_mbox(raw), policy=POLICY)  # type: ignore[return-value]


def dump(msg: Message) -> bytes:
    return msg.as_bytes(policy=POLICY)


def _text_of(part: Message) -> str | None:
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - a part the stdlib cannot decode: leave it alone
        return None
    if not isinstance(data, bytes):
        return None
    try:
        label = part.get_content_charset()
    except Exception:  # noqa: BLE001
        label = None
    return decode_bytes(data, label)


def displayed_parts(msg: Message) -> list[Message]:
    """text/plain and text/html leaves that are not attachments, in order."""
    out = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part.get_content_type() not in ("text/plain", "text/html"):
            continue
        if "attachment" in str(part.get("Content-Disposition", "")).lower():
            continue
        out.append(part)
    return out


def edit_text(raw: bytes, plain: TextEdit | None = None, html: TextEdit | None = None) -> bytes | None:
    """Apply plain() to every displayed text/plain part and html() to every text/html part;
    None when nothing changed."""
    try:
        msg = load(raw)
        changed = False
        for part in displayed_parts(msg):
            fn = html if part.get_content_type() == "text/html" else plain
            if fn is None:
                continue
            text = _text_of(part)
            if text is None:
                continue
            new = fn(text)
            if new != text:
                set_text(part, new)
                changed = True
        return dump(msg) if changed else None
    except Exception:  # noqa: BLE001 - a message the stdlib cannot rewrite is not transformed
        return None


def set_text(part: Message, text: str) -> None:
    """Replace a leaf part's text, keeping its subtype, as UTF-8 base64."""
    subtype = part.get_content_subtype()
    for name in ("Content-Transfer-Encoding",):
        del part[name]
    part.set_payload(text.encode("utf-8"))
    part.set_type(f"text/{subtype}")
    part.set_param("charset", "utf-8")
    email.encoders.encode_base64(part)


def set_header(raw: bytes, name: str, value: str | None) -> bytes | None:
    """Set (replace every occurrence of) a header field; value None removes it."""
    try:
        msg = load(raw)
        del msg[name]
        if value is not None:
            msg[name] = value
        return dump(msg)
    except Exception:  # noqa: BLE001
        return None


def from_parts(raw: bytes) -> tuple[str, str]:
    """(display name, address) of the first From address ("", "") when there is none, decoded the
    way otpguard reads it (RFC 2047 words across folded lines joined without a space)."""
    from otpguard.core.headerfields import decode_header_value, split_address
    from otpguard.core.mime import header_fields_only

    try:
        value = header_fields_only(strip_mbox(raw)).get("From")
        pairs = split_address(str(value)) if value is not None else []
    except Exception:  # noqa: BLE001
        return "", ""
    if not pairs:
        return "", ""
    display, addr = pairs[0]
    return (decode_header_value(display) if "=?" in display else display), addr


def subject_of(raw: bytes) -> str:
    try:
        return str(load(raw)["Subject"] or "")
    except Exception:  # noqa: BLE001
        return ""


def address(display: str, addr: str) -> str:
    try:
        return formataddr((display, addr))
    except UnicodeError:  # a non-ASCII address: written as it came (SMTPUTF8 style)
        quoted = display.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{addr}>' if display else addr


def wrap_rfc822(raw: bytes, *, outer_from: str, outer_to: str, subject: str, note: str) -> bytes:
    """A new message from outer_from carrying a note and the original as a message/rfc822 part."""
    outer = EmailMessage(policy=POLICY)
    outer["From"] = outer_from
    outer["To"] = outer_to
    outer["Subject"] = subject
    outer["Date"] = "Tue, 02 Dec 2025 10:00:00 +0000"
    outer["Message-ID"] = "<fwd-20251202100000@mail.example.net>"
    outer["MIME-Version"] = "1.0"
    outer.set_content(note)
    inner = email.message_from_bytes(strip_mbox(raw), policy=POLICY)
    outer.add_attachment(inner)  # message/rfc822, as mail clients forward "as attachment"
    return dump(outer)


def html_to_sentences(html: str) -> str:
    """Rough text of an HTML fragment, for transforms that rebuild a body (not for analysis)."""
    text = re.sub(r"(?is)<(script|style|head)\b.*?</\1>", " ", html)
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</tr>|</h[1-6]>", "\n", text)
    text = re.sub(r"<[^>]+>", " ", text)
    return re.sub(r"[ \t]+", " ", text)
