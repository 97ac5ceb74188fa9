"""Bytes in, facts out: reads a message as a mail client shows it.

The parts a client displays come first (the preferred alternative, inline parts, in order),
then the rest (other alternatives, attachments): the displayed text gets the text budget
first, each displayed part its share, so a large harmless part cannot push the lure out.
Attached messages (message/rfc822) are read as messages: their From and Subject become
inner_messages, their text is the message's text. Where the structure is ambiguous (two
Content-Type fields, two boundary parameters, base64 padded in the middle, UTF-7), every
plausible reading is analysed and the defect recorded. Every limit reached is named in
`limits`.

Never raises on bad input: every decoding step falls back, and what was skipped is recorded
in `defects`. Limits come from AnalysisConfig so hostile mail cannot make us work unbounded.
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field, replace
from email.message import Message

from .attachments import calendar_read, docx_text, pdf_read, rtf_text
from .charset import decode_bytes
from .headerfields import decode_header_value, decoded, split_address, surrogates_to_text
from .html import parse_html
from .message import Address, Attachment, Form, Image, InnerMessage, Link, ParsedMessage
from .mime import Leaf, header_fields_only, message_from_bytes, parameter, walk_leaves
from .normalize import evidence
from .settings import AnalysisConfig
from .urls import bare_links, resolve, text_links

_ADDRESS_FIELDS = frozenset({"from", "reply-to", "sender", "return-path"})
_DKIM_D = re.compile(r"(?:^|;)\s*d\s*=\s*([^;\s]+)", re.I)
_HTML_SNIFF = re.compile(rb"<\s*(?:html|body|div|table|a\s|p[\s>]|br|span|font)", re.I)
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/jpg", "image/gif", "image/bmp", "image/webp", "image/tiff")
_IMAGE_NAMES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")
# Attached messages inside attached messages: read this deep, no deeper.
MAX_INNER_DEPTH = 3
MAX_INNER_MESSAGES = 20
# Readings of an ambiguous top-level structure besides the stdlib's own.
MAX_READINGS = 3
# A displayed part is guaranteed at least this much of the text budget (when there is any).
_MIN_SHARE = 2000
# Forwarded-message header blocks, as clients quote them (Gmail, Outlook, Apple Mail,
# Thunderbird; Japanese and European clients' own words).
_FORWARD_START = re.compile(
    r"^[ \t>]*(?:-{5,} ?(?:Forwarded message|Original Message|Message transféré|Weitergeleitete Nachricht"
    r"|Mensaje reenviado|Messaggio inoltrato|Mensagem encaminhada|転送メッセージ|転送されたメッセージ|元のメッセージ)"
    r" ?-{3,}|Begin forwarded message:|-{3,} ?Forwarded by .{0,80}-{3,})[ \t]*$",
    re.I | re.M)
# Every marker line holds three dashes or "Begin forwarded": a literal-first search skips the rest in C.
_FORWARD_GATE = re.compile(r"-----|Begin forwarded|--- ?Forwarded by")
_FORWARD_FIELD = re.compile(
    r"^[ \t>*]*(From|Von|De|Da|差出人|送信者|Subject|Sujet|Objet|Betreff|Asunto|Oggetto|Assunto|件名)[ \t]*[:：][ \t]*(.*)$",
    re.I | re.M)
_FROM_WORDS = frozenset({"from", "von", "de", "da", "差出人", "送信者"})


@dataclass(slots=True)
class _Reading:
    """What the reading collects, part by part (mutable while reading; frozen at the end)."""

    limits: AnalysisConfig
    budget: int
    texts: list[str] = field(default_factory=list)
    att_texts: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    forms: list[Form] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    inner: list[InnerMessage] = field(default_factory=list)
    obfuscation: list[str] = field(default_factory=list)
    reached: list[str] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    pictures: list[bytes] = field(default_factory=list)
    title: str = ""

    def keep(self, bucket: list[str], text: str, share: int | None = None) -> None:
        """Keep text within the budget (and within its share of it, for a displayed part)."""
        if not text:
            return
        room = self.budget if share is None else min(self.budget, share)
        if room <= 0:
            self.reached.append(f"text budget spent: {len(text)} characters of a part not read")
            return
        if len(text) > room:
            self.reached.append(f"text budget: a part of {len(text)} characters read to {room}")
        bucket.append(text[:room])
        self.budget -= min(room, len(text))

    def note(self, item: str, where: list[str]) -> None:
        if item not in where:
            where.append(item)


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


def parse_message(raw: bytes, limits: AnalysisConfig, *, whole: bool = True) -> ParsedMessage:
    """Parse raw message bytes into facts. Never raises.

    whole=False leaves the facts only brand-claiming mail needs for complete() (pending)."""
    try:
        msg = _parse_message(raw, limits)
        return complete(msg, limits.max_links) if whole else msg
    except Exception as exc:  # noqa: BLE001 - the last net: facts unknown, but no exception
        return ParsedMessage(raw_headers=(), from_=(), reply_to=(), sender=None, return_path=None, subject="", text="",
                             attachment_text="", links=(), forms=(), attachments=(), dkim_domains=(),
                             defects=(f"internal: parse failed: {type(exc).__name__}: {exc}"[:200],), size=len(raw))


def _build(raw: bytes, defects: list[str]) -> Message:
    try:
        return message_from_bytes(raw)
    except Exception as exc:  # noqa: BLE001 - the stdlib raises on a few malformed parameters
        defects.append(f"unparsable: {type(exc).__name__}")
        return header_fields_only(raw)


def _parse_message(raw: bytes, limits: AnalysisConfig) -> ParsedMessage:
    if raw.startswith(b"From ") and b"\n" in raw[:1000]:
        raw = raw.split(b"\n", 1)[1]  # mbox envelope line, not a header
    reading = _Reading(limits=limits, budget=limits.max_text_chars)
    defects = reading.defects
    msg = _build(raw, defects)

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

    readings = [(_read_body(msg, reading, 0), 0, len(reading.texts))]
    for other, why in _other_readings(raw, headers):
        # Each reading has a budget of its own: a wrong reading (a MIME body read as one
        # text) must not spend what the right one needs.
        defects.append(why)
        reading.budget = limits.max_text_chars
        start = len(reading.texts)
        readings.append((_read_body(_build(other, defects), reading, 0), start, len(reading.texts)))
    if len(readings) > 1:
        # The reading that finds the most parts first (a client that understood the structure
        # shows parts; the other reading shows one lump of MIME source).
        ordered = sorted(readings, key=lambda r: -r[0])
        reading.texts[:] = [t for _, a, b in ordered for t in reading.texts[a:b]]

    text = _layout(reading)
    reading.inner.extend(inline_forwards(text))
    return ParsedMessage(
        raw_headers=tuple(headers), from_=from_, reply_to=reply_to, sender=sender, return_path=return_path,
        subject=subject, text=text, attachment_text="\n".join(reading.att_texts), links=tuple(reading.links),
        forms=tuple(reading.forms), attachments=tuple(reading.attachments), dkim_domains=tuple(dkim_domains),
        defects=tuple(dict.fromkeys(defects)), size=len(raw), title=reading.title, images=tuple(reading.images),
        inner_messages=tuple(reading.inner[:MAX_INNER_MESSAGES]), obfuscation=tuple(dict.fromkeys(reading.obfuscation)),
        limits=tuple(dict.fromkeys(reading.reached)), pictures=tuple(reading.pictures), pending=True,
    )


def complete(msg: ParsedMessage, max_links: int) -> ParsedMessage:
    """The message with its pending facts read: the links written out in its text (URLs, then
    bare host names; the structure's own links first, max_links in all) and the Unicode tricks
    of its display name, subject and body added to the obfuscation evidence."""
    if not msg.pending:
        return msg
    links = list(msg.links)
    limits = msg.limits
    text = msg.text
    seen = {link.href for link in links}
    if len(links) < max_links:
        for link in text_links(text, max_links - len(links)):
            if link.href not in seen:
                seen.add(link.href)
                links.append(link)
    if len(links) < max_links:
        links.extend(bare_links(text, max_links - len(links), seen))
    if len(links) >= max_links and (note := f"more than {max_links} links: the rest not read") not in limits:
        limits += (note,)
    obfuscation = list(msg.obfuscation)
    for where, value in (("display name", " ".join(a.display for a in msg.from_)), ("subject", msg.subject),
                         ("body", text)):
        obfuscation.extend(evidence(value, where))
    return replace(msg, links=tuple(links[:max_links]), limits=limits, obfuscation=tuple(obfuscation), pending=False)


_HEAD = 10_000


def _layout(reading: _Reading) -> str:
    """The message's text: its parts in order. When a part was cut to its share of the text
    budget (a huge part beside others), the head of every part comes first and the tails
    after: what a check scans first is the start of each displayed part, not one part's bulk."""
    texts = reading.texts
    if len(texts) < 2 or not any(r.startswith("text budget") for r in reading.reached):
        return "\n".join(texts)
    heads, tails = [], []
    for text in texts:
        if len(text) <= _HEAD:
            heads.append(text)
            continue
        cut = text.rfind("\n", 0, _HEAD)
        cut = cut if cut > _HEAD // 2 else _HEAD
        heads.append(text[:cut])
        tails.append(text[cut:])
    return "\n".join(heads + tails)


def _read_body(msg: Message, reading: _Reading, depth: int) -> int:
    """Read every leaf of msg, displayed parts first, each displayed one within its share;
    the number of leaves read."""
    limits = reading.limits
    attached: list[Message] = []
    try:
        leaves = walk_leaves(msg, limits, reading.defects, reading.reached, attached)
    except Exception as exc:  # noqa: BLE001 - never lose the headers' facts to a broken body
        reading.defects.append(f"walk: {type(exc).__name__}")
        return 0
    for inner in attached[:MAX_INNER_MESSAGES]:
        try:
            reading.inner.append(inner_message(inner))
        except Exception:  # noqa: BLE001 - a mangled inner header block: its text is still read
            reading.defects.append("unreadable attached message header")
    displayed = sum(1 for leaf in leaves if leaf.displayed)
    seen_displayed = 0
    for leaf in leaves:
        share = None
        if leaf.displayed:
            # Each displayed part may take what is left divided by the displayed parts left,
            # and never less than _MIN_SHARE: the last part shown is read as the first.
            left = displayed - seen_displayed
            share = max(reading.budget // max(left, 1), min(_MIN_SHARE, reading.budget))
            seen_displayed += 1
        try:
            _part(leaf, reading, share, depth)
        except Exception as exc:  # noqa: BLE001 - one broken part must not lose the rest
            reading.defects.append(f"part: {type(exc).__name__}")
    return len(leaves)


def _decode_payload(part: Message, reading: _Reading, ctype: str) -> bytes:
    limits = reading.limits
    encoded = part.get_payload()
    if isinstance(encoded, str) and len(encoded) > limits.max_part_bytes * 2:
        # Decode no more than the part cap: decoding first and cutting later would hold the
        # whole decoded attachment in memory. (base64 is 4/3 of the data, qp up to 3x.)
        part.set_payload(encoded[: limits.max_part_bytes * 2])
        reading.defects.append(f"part truncated: {ctype}")
        reading.note(f"a {ctype} part larger than max_part_bytes read in part", reading.reached)
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
    if cte == "base64" and isinstance(part.get_payload(), str):
        data = _base64_readings(part.get_payload(), reading)
    else:
        try:
            data = part.get_payload(decode=True)
        except Exception:  # noqa: BLE001 - bad base64/qp
            data = None
    if data is None:
        payload = part.get_payload()
        data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    if len(data) > limits.max_part_bytes:
        reading.defects.append(f"part truncated: {ctype}")
        reading.note(f"a {ctype} part larger than max_part_bytes read in part", reading.reached)
        data = data[: limits.max_part_bytes]
    return data


_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/=]")


def _base64_readings(payload: str, reading: _Reading) -> bytes:
    """base64 as the most generous client decodes it. Padding ("=") in the middle of the data
    ends the data for some decoders (Python's among them) and not for others, which go on
    with the next quantum: the text after it is what those readers see, so both are read."""
    first = payload.find("=")
    if first == -1 or not payload[first:].strip("= \t\r\n"):
        # Padding only at the end (or none): the one reading everyone shares.
        try:
            return binascii.a2b_base64(payload.encode("ascii", "ignore"))
        except (binascii.Error, ValueError):
            pass
    compact = _B64_JUNK.sub(b"", payload.encode("ascii", "ignore"))
    if b"=" not in compact.rstrip(b"="):
        return _b64_lenient(compact)
    reading.note("base64 padding inside the data (every reading analysed)", reading.defects)
    return _b64_lenient(compact)


def _b64_lenient(compact: bytes) -> bytes:
    """Each padded chunk decoded on its own and the pieces joined; a stray tail dropped."""
    out = []
    for chunk in re.split(rb"(?<==)(?=[^=])", compact):
        body = chunk.rstrip(b"=")
        body = body[: len(body) - len(body) % 4] if len(body) % 4 == 1 else body
        try:
            out.append(base64.b64decode(body + b"=" * (-len(body) % 4)))
        except (binascii.Error, ValueError):
            pass
    return b"".join(out)


def _text_of(data: bytes, charset: str | None, reading: _Reading) -> str:
    """Decoded text; UTF-7 (RFC 2152) is ASCII on the wire, so it is decoded by its label,
    and the label is a defect worth naming (no legitimate mail needs it any more)."""
    label = (charset or "").strip().strip('"').lower()
    if label in ("utf-7", "utf7", "unicode-1-1-utf-7", "x-unicode-1-1-utf-7") and data.isascii():
        reading.note("UTF-7 body", reading.defects)
        try:
            return data.decode("utf-7")
        except UnicodeDecodeError:
            return data.decode("utf-7", "replace")
    return decode_bytes(data, charset)


def _part(leaf: Leaf, reading: _Reading, share: int | None, depth: int) -> None:
    part = leaf.part
    limits = reading.limits
    ctype = (part.get_content_type() or "text/plain").lower()
    disposition = (part.get("Content-Disposition") or "").lower()
    raw_name = parameter(part.get_filename)
    filename = decode_header_value(raw_name) if raw_name else ""
    fname = filename.lower()
    if ctype in ("message/rfc822", "message/global") and not isinstance(part.get_payload(), list):
        _attached_message(_decode_payload(part, reading, ctype), reading, depth)  # e.g. base64-encoded
        return
    data = _decode_payload(part, reading, ctype)
    size = len(data)
    charset = parameter(part.get_content_charset)
    is_attachment = "attachment" in disposition or (bool(filename) and not ctype.startswith("text/"))
    is_attachment = is_attachment or not leaf.displayed and ctype not in ("text/plain", "text/html")
    links = reading.links

    if ctype.startswith("multipart/"):
        # walk_leaves hands over only multiparts the parser could not split (no boundary, a
        # broken one): their raw text is still what the reader may see, so it is read as text.
        reading.defects.append("multipart read as text")
        ctype = "text/plain"
    if ctype in ("image/svg+xml",) or fname.endswith((".svg", ".svgz")):
        _page(_text_of(data, charset, reading), filename or "image.svg", ctype, size, reading)
        return
    if ctype in ("application/xhtml+xml",) or fname.endswith((".xhtml", ".xht")):
        _page(_text_of(data, charset, reading), filename, ctype, size, reading)
        return
    if ctype == "text/html" or fname.endswith((".htm", ".html", ".shtml")):
        if is_attachment:
            _page(_text_of(data, charset, reading), filename, ctype, size, reading)
            return
        html = parse_html(_text_of(data, charset, reading), max(0, limits.max_links - len(links)))
        _take_html(html, reading)
        reading.keep(reading.texts, html.text, share)
        return
    if ctype == "text/plain" and not is_attachment:
        text = _text_of(data, charset, reading)
        if _HTML_SNIFF.search(data[:2048]) and "</" in text:
            html = parse_html(text, max(0, limits.max_links - len(links)))  # HTML sent as text/plain happens
            _take_html(html, reading)
            text = html.text
        reading.keep(reading.texts, text, share)
        return
    if ctype.startswith("image/") or fname.endswith(_IMAGE_NAMES):
        cid = str(part.get("content-id", "")).strip().strip("<>")
        reading.images.append(Image(src=filename or (f"cid:{cid}" if cid else ctype), alt="", title="", href="",
                                    source="attachment"))
        if (ctype in _IMAGE_TYPES or fname.endswith(_IMAGE_NAMES)) and len(reading.pictures) < 16:
            reading.pictures.append(data)
        if is_attachment:
            reading.attachments.append(Attachment(filename=filename, content_type=ctype, size=size, text=""))
        return
    extracted = ""
    found: list[str] = []
    if ctype == "application/pdf" or fname.endswith(".pdf"):
        if len(data) <= limits.pdf_max_bytes:
            extracted, found, note = pdf_read(data, limits.pdf_max_pages)
            if note:
                reading.note(f"{filename or 'PDF'}: {note}", reading.defects)
        else:
            reading.note(f"a PDF of {len(data)} bytes not read (pdf_max_bytes {limits.pdf_max_bytes})", reading.reached)
    elif ctype in ("text/calendar", "application/ics") or fname.endswith((".ics", ".vcs")):
        extracted, found = calendar_read(data, limits.max_part_bytes)
    elif fname.endswith((".docx", ".docm")) or "wordprocessingml" in ctype:
        extracted = docx_text(data, limits.max_part_bytes)
    elif fname.endswith(".rtf") or ctype in ("application/rtf", "text/rtf", "text/richtext"):
        extracted = rtf_text(data, limits.max_part_bytes)
    elif ctype.startswith("text/"):
        extracted = _text_of(data, charset, reading)
    for href in found:
        if len(links) < limits.max_links:
            links.append(Link(href=resolve(href), text="", source="attachment"))
    if extracted:
        reading.keep(reading.att_texts, extracted)
        links.extend(Link(href=link.href, text="", source="attachment")
                     for link in text_links(extracted, max(0, limits.max_links - len(links))))
    if is_attachment or extracted:
        reading.attachments.append(Attachment(filename=filename, content_type=ctype, size=size, text=extracted[:2000]))


def _take_html(html, reading: _Reading) -> None:
    reading.links.extend(html.links)
    reading.forms.extend(html.forms)
    reading.images.extend(html.images[: max(0, 200 - len(reading.images))])
    reading.obfuscation.extend(html.obfuscation)
    for item in html.limits:
        reading.note(item, reading.reached)
    for data in html.pictures:
        if len(reading.pictures) < 16:
            reading.pictures.append(data)
    if not reading.title and html.title:
        reading.title = html.title


def _page(text: str, filename: str, ctype: str, size: int, reading: _Reading) -> None:
    """An HTML, XHTML or SVG document the reader opens in a browser: its text, its links, and
    where its scripts and meta refresh send the browser (those run there, unlike in mail)."""
    limits = reading.limits
    html = parse_html(text, max(0, limits.max_links - len(reading.links)), page=True)
    for link in html.links:
        source = link.source if link.source in ("meta-refresh", "script", "form") else "attachment"
        reading.links.append(Link(href=link.href, text=link.text, source=source))
    reading.forms.extend(html.forms)
    reading.obfuscation.extend(html.obfuscation)
    body = "\n".join(t for t in (html.title, html.text) if t)
    reading.keep(reading.att_texts, body)
    reading.attachments.append(Attachment(filename=filename, content_type=ctype, size=size, text=body[:2000]))


def _attached_message(data: bytes, reading: _Reading, depth: int) -> None:
    """A message/rfc822 part whose payload the parser left encoded: parsed as a message."""
    if depth >= MAX_INNER_DEPTH:
        reading.note(f"attached messages nested deeper than {MAX_INNER_DEPTH}: not read", reading.reached)
        return
    inner = _build(data, reading.defects)
    reading.inner.append(inner_message(inner))
    _read_body(inner, reading, depth + 1)


def inner_message(msg: Message, kind: str = "rfc822") -> InnerMessage:
    """The From and Subject of an attached message."""
    froms = [surrogates_to_text(str(v)) for v in msg.get_all("from", [])]
    return InnerMessage(from_=_addresses(froms), subject=decoded(str(msg.get("subject", ""))), kind=kind)


def inline_forwards(text: str, limit: int = 5) -> list[InnerMessage]:
    """Forwarded messages quoted in the text: a forward marker line, then a header block
    (From:, Subject:, in the client's language) within the next lines."""
    out: list[InnerMessage] = []
    if "-----" not in text and "Begin forwarded" not in text and "Forwarded by" not in text:
        return out  # what every _FORWARD_GATE match holds: three searches in C spare the regex
    pos = 0
    while len(out) < limit and (hit := _FORWARD_GATE.search(text, pos)) is not None:
        # The marker's line, matched from its start: only lines holding a gate hit are tried.
        line_start = text.rfind("\n", 0, hit.start()) + 1
        line_end = text.find("\n", hit.end())
        line_end = len(text) if line_end == -1 else line_end
        pos = line_end + 1
        m = _FORWARD_START.match(text, line_start, line_end)
        if m is None:
            continue
        block = text[m.end(): m.end() + 1500]
        from_value = subject = ""
        for f in _FORWARD_FIELD.finditer(block):
            name, value = f.group(1).lower(), f.group(2).strip()
            if name in _FROM_WORDS:
                from_value = from_value or value
            else:
                subject = subject or value
            if from_value and subject:
                break
        if from_value or subject:
            out.append(InnerMessage(from_=_addresses([from_value]) if from_value else (), subject=subject,
                                    kind="inline-forward"))
    return out


_HEADER_END = re.compile(rb"\r?\n\r?\n")
_CT_FIELD = re.compile(rb"^content-type[ \t]*:.*(?:\r?\n[ \t].*)*", re.I | re.M)
_BOUNDARY_PARAM = re.compile(rb"""boundary\*?[ \t]*=[ \t]*(?:"([^"\r\n]*)"|([^;\s"]+))""", re.I)


def _other_readings(raw: bytes, headers: list[tuple[str, str]]) -> list[tuple[bytes, str]]:
    """The top-level structure read the other plausible ways, when it is ambiguous: a second
    Content-Type field (clients differ on which one wins: RFC 2045 allows one), or a second
    boundary parameter (RFC 2045 5.1: parameters are unique; readers keep the first or the
    last). Each other reading is the message with only that field or that boundary."""
    cts = [v for k, v in headers if k == "content-type"]
    boundaries = sum(len(_BOUNDARY_PARAM.findall(v.encode("utf-8", "surrogateescape"))) for v in cts)
    if len(cts) < 2 and boundaries < 2:
        return []
    end = _HEADER_END.search(raw)
    if end is None:
        return []
    head, body = raw[: end.start()], raw[end.start():]
    fields = list(_CT_FIELD.finditer(head))
    out: list[tuple[bytes, str]] = []
    if len(fields) >= 2:
        for keep in fields[1:MAX_READINGS + 1]:
            # The head without the other Content-Type fields: the reading where `keep` wins.
            pieces, pos = [], 0
            for f in fields:
                if f is not keep:
                    pieces.append(head[pos:f.start()])
                    pos = f.end() + (2 if head[f.end():f.end() + 2] == b"\r\n" else 1)
            pieces.append(head[pos:])
            out.append((b"".join(pieces) + body, "two Content-Type fields (every reading analysed)"))
    for f in fields[:1] if len(fields) == 1 else fields:
        params = list(_BOUNDARY_PARAM.finditer(f.group(0)))
        for other in params[1:MAX_READINGS + 1]:
            value = other.group(1) if other.group(1) is not None else other.group(2)
            first = params[0]
            field_text = f.group(0)
            # The field with its first boundary parameter set to the other value.
            new_field = field_text[:first.start()] + b'boundary="' + value + b'"' + field_text[first.end():]
            out.append((head[:f.start()] + new_field + head[f.end():] + body,
                        "two boundary parameters (every reading analysed)"))
    return out[:MAX_READINGS]
