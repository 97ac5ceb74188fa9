"""Bytes in, facts out: walks a message's parts and hands each to the reader of its type.

Never raises on bad input: every decoding step falls back, and what was skipped is recorded
in `defects`. Limits come from AnalysisConfig so hostile mail cannot make us work unbounded.
"""
from __future__ import annotations

import re
from email.message import Message

from .attachments import docx_text, pdf_text, rtf_text
from .charset import decode_bytes
from .headerfields import decode_header_value, decoded, split_address, surrogates_to_text
from .html import parse_html
from .message import Address, Attachment, Form, Link, ParsedMessage
from .mime import header_fields_only, message_from_bytes, parameter, walk_leaves
from .settings import AnalysisConfig
from .urls import text_links

_ADDRESS_FIELDS = frozenset({"from", "reply-to", "sender", "return-path"})
_DKIM_D = re.compile(r"(?:^|;)\s*d\s*=\s*([^;\s]+)", re.I)
_HTML_SNIFF = re.compile(rb"<\s*(?:html|body|div|table|a\s|p[\s>]|br|span|font)", re.I)


def _addresses(values: list[str]) -> tuple[Address, ...]:
    result = []
    for raw in values:
        try:
            pairs = split_address(raw)
        except Exception:  # noqa: BLE001 - the stdlib parser raises assorted errors on junk
            pairs = []
        for display, addr in pairs:
            display = decode_header_value(display) if "=?" in display else display
            addr = addr.strip().strip("<>").strip('"').strip()
            if addr and "@" not in addr and not display:
                # "Amazon Voucher, <x@y>" parses as two addresses, the first one only words.
                display, addr = addr, ""
            local, _, domain = addr.rpartition("@")
            domain = domain.strip().rstrip(".").lower()
            result.append(Address(display=display.strip(), addr=addr, local=local, domain=domain))
    return tuple(result)


def parse_message(raw: bytes, limits: AnalysisConfig) -> ParsedMessage:
    """Parse raw message bytes into facts. Never raises."""
    try:
        return _parse_message(raw, limits)
    except Exception as exc:  # noqa: BLE001 - the last net: facts unknown, but no exception
        return ParsedMessage(raw_headers=(), from_=(), reply_to=(), sender=None, return_path=None, subject="", text="",
                             attachment_text="", links=(), forms=(), attachments=(), dkim_domains=(),
                             defects=(f"internal: parse failed: {type(exc).__name__}: {exc}"[:200],), size=len(raw))


def _parse_message(raw: bytes, limits: AnalysisConfig) -> ParsedMessage:
    defects: list[str] = []
    if raw.startswith(b"From ") and b"\n" in raw[:1000]:
        raw = raw.split(b"\n", 1)[1]  # mbox envelope line, not a header
    try:
        msg = message_from_bytes(raw)
    except Exception as exc:  # noqa: BLE001 - the stdlib raises on a few malformed parameters
        defects.append(f"unparsable: {type(exc).__name__}")
        msg = header_fields_only(raw)

    headers: list[tuple[str, str]] = []
    raw_values: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        key = str(name).lower()
        value = str(value)
        headers.append((key, value))
        if key in _ADDRESS_FIELDS:
            raw_values.setdefault(key, []).append(surrogates_to_text(value) if "=?" not in value else value)

    def values(name: str) -> list[str]:
        return raw_values.get(name, [])

    from_ = _addresses(values("from"))
    reply_to = _addresses(values("reply-to"))
    sender = next(iter(_addresses(values("sender"))), None)
    return_path = next(iter(_addresses(values("return-path"))), None)
    subject = next((decoded(v) for k, v in headers if k == "subject"), "")

    dkim_domains = []
    for k, v in headers:
        if k == "dkim-signature":
            m = _DKIM_D.search(decoded(v))
            if m:
                dkim_domains.append(m.group(1).lower().rstrip("."))

    texts: list[str] = []
    att_texts: list[str] = []
    links: list[Link] = []
    forms: list[Form] = []
    attachments: list[Attachment] = []
    budget = [limits.max_text_chars]

    def keep(bucket: list[str], text: str) -> None:
        if budget[0] <= 0 or not text:
            return
        bucket.append(text[: budget[0]])
        budget[0] -= len(text)

    try:
        parts = walk_leaves(msg, limits, defects)
    except Exception as exc:  # noqa: BLE001 - never lose the headers' facts to a broken body
        defects.append(f"walk: {type(exc).__name__}")
        parts = []
    for part in parts:
        try:
            _part(part, limits, keep, texts, att_texts, links, forms, attachments, defects)
        except Exception as exc:  # noqa: BLE001 - one broken part must not lose the rest
            defects.append(f"part: {type(exc).__name__}")

    text = "\n".join(texts)
    if len(links) < limits.max_links:
        seen = {link.href for link in links}
        for link in text_links(text, limits.max_links - len(links)):
            if link.href not in seen:
                links.append(link)
    return ParsedMessage(
        raw_headers=tuple(headers), from_=from_, reply_to=reply_to, sender=sender, return_path=return_path,
        subject=subject, text=text, attachment_text="\n".join(att_texts), links=tuple(links[: limits.max_links]),
        forms=tuple(forms), attachments=tuple(attachments), dkim_domains=tuple(dkim_domains),
        defects=tuple(defects), size=len(raw),
    )


def _part(part: Message, limits: AnalysisConfig, keep, texts, att_texts, links, forms, attachments,
          defects) -> None:
    ctype = (part.get_content_type() or "text/plain").lower()
    disposition = (part.get("Content-Disposition") or "").lower()
    raw_name = parameter(part.get_filename)
    filename = decode_header_value(raw_name) if raw_name else ""
    encoded = part.get_payload()
    if isinstance(encoded, str) and len(encoded) > limits.max_part_bytes * 2:
        # Decode no more than the part cap: decoding first and cutting later would hold the
        # whole decoded attachment in memory. (base64 is 4/3 of the data, qp up to 3x.)
        part.set_payload(encoded[: limits.max_part_bytes * 2])
        defects.append(f"part truncated: {ctype}")
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - bad base64/qp
        data = None
    if data is None:
        payload = part.get_payload()
        data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    size = len(data)
    if size > limits.max_part_bytes:
        defects.append(f"part truncated: {ctype}")
        data = data[: limits.max_part_bytes]
    charset = parameter(part.get_content_charset)
    is_attachment = "attachment" in disposition or (bool(filename) and not ctype.startswith("text/"))
    fname = filename.lower()

    if ctype.startswith("multipart/"):
        # _walk hands over only multiparts the parser could not split (no boundary, a broken
        # one): their raw text is still what the reader may see, so it is read as plain text.
        defects.append("multipart read as text")
        ctype = "text/plain"
    if ctype == "message/rfc822":
        return  # encapsulated message payloads are walked as parts by the parser
    if ctype == "text/html" or fname.endswith((".htm", ".html", ".shtml")):
        html = parse_html(decode_bytes(data, charset), limits.max_links)
        links.extend(html.links)
        forms.extend(html.forms)
        if is_attachment:
            keep(att_texts, html.text)
            attachments.append(Attachment(filename=filename, content_type=ctype, size=size, text=html.text[:2000]))
        else:
            keep(texts, html.text)
        return
    if ctype == "text/plain" and not is_attachment:
        text = decode_bytes(data, charset)
        if _HTML_SNIFF.search(data[:2048]) and "</" in text:
            html = parse_html(text, limits.max_links)  # HTML sent as text/plain happens
            links.extend(html.links)
            forms.extend(html.forms)
            text = html.text
        keep(texts, text)
        return
    extracted = ""
    if ctype == "application/pdf" or fname.endswith(".pdf"):
        if len(data) <= limits.pdf_max_bytes:
            extracted = pdf_text(data, limits.pdf_max_pages)
    elif fname.endswith((".docx", ".docm")) or "wordprocessingml" in ctype:
        extracted = docx_text(data, limits.max_part_bytes)
    elif fname.endswith(".rtf") or ctype in ("application/rtf", "text/rtf", "text/richtext"):
        extracted = rtf_text(data, limits.max_part_bytes)
    elif ctype.startswith("text/"):
        extracted = decode_bytes(data, charset)
    if extracted:
        keep(att_texts, extracted)
        links.extend(text_links(extracted, max(0, limits.max_links - len(links))))
    if is_attachment or extracted:
        attachments.append(Attachment(filename=filename, content_type=ctype, size=size, text=extracted[:2000]))
