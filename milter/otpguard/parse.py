"""Bytes in, facts out: headers, addresses, visible text, links, forms, attachment text.

Never raises on bad input: every decoding step falls back, and what was skipped is recorded
in `defects`. Limits come from AnalysisConfig so hostile mail cannot make us work unbounded.
"""
from __future__ import annotations

import codecs
import email
import email.errors
import email.parser
import io
import re
import zipfile
from dataclasses import dataclass
from typing import Callable
from email.header import decode_header
from email.message import Message
from email.utils import getaddresses
from urllib.parse import unquote

from selectolax.lexbor import LexborHTMLParser as HTMLParser

from .config import AnalysisConfig


@dataclass(frozen=True, slots=True)
class Address:
    display: str
    addr: str
    local: str
    domain: str


@dataclass(frozen=True, slots=True)
class Link:
    href: str
    text: str  # visible text of the anchor ("" for plain-text links)
    source: str  # html | text | form | image | attachment


@dataclass(frozen=True, slots=True)
class Form:
    action: str
    has_password: bool
    inputs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    size: int
    text: str


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    # (lower-case name, value as read), in order: most fields are never looked at, so they
    # are decoded (RFC 2047, 8-bit, unfolded) when asked for, by header(), header_all(), headers.
    raw_headers: tuple[tuple[str, str], ...]
    from_: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    sender: Address | None
    return_path: Address | None
    subject: str
    text: str  # visible text of the body parts (plain text and HTML), bounded
    attachment_text: str  # text found in HTML/PDF/DOCX/RTF attachments, bounded
    links: tuple[Link, ...]
    forms: tuple[Form, ...]
    attachments: tuple[Attachment, ...]
    dkim_domains: tuple[str, ...]
    defects: tuple[str, ...]
    size: int

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """Every field as (lower-case name, decoded value), in order."""
        return tuple((k, _decoded(v)) for k, v in self.raw_headers)

    def header(self, name: str) -> str | None:
        """The first field of that name, decoded."""
        name = name.lower()
        for k, v in self.raw_headers:
            if k == name:
                return _decoded(v)
        return None

    def header_all(self, name: str) -> list[str]:
        """Every field of that name, decoded, in order."""
        name = name.lower()
        return [_decoded(v) for k, v in self.raw_headers if k == name]


# --- charsets -------------------------------------------------------------------------------

# Labels mail software gets wrong, mapped to the superset that decodes what they really send.
_CHARSET_ALIASES = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "cp936": "gb18030",
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932", "ms_kanji": "cp932",
    "windows-31j": "cp932", "iso-2022-jp": "iso2022_jp_ext", "euc-jp": "euc_jis_2004",
    "ks_c_5601-1987": "cp949", "euc-kr": "cp949", "iso-8859-1": "cp1252", "latin1": "cp1252",
    "us-ascii": "utf-8", "ascii": "utf-8", "unicode-1-1-utf-7": "utf-7", "x-unknown": "utf-8",
    "big5": "big5hkscs", "tis-620": "cp874",
}
_KANA_RE = re.compile(r"[\u3041-\u3096\u30a1-\u30fa]")


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().strip('"').lower()
    label = _CHARSET_ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except (LookupError, ValueError):  # ValueError: a NUL inside the label
        return None


def decode_bytes(data: bytes, label: str | None) -> str:
    """Decode text bytes by their label, repairing wrong or missing labels."""
    if not data:
        return ""
    if data.isascii() and b"\x1b" not in data:
        return data.decode("ascii")
    codec = _codec(label)
    if b"\x1b$B" in data or b"\x1b$@" in data:  # ISO-2022-JP escape: whatever the label says
        codec = "iso2022_jp_ext"
    if codec:
        try:
            text = data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            text = None
        else:
            # Japanese sent as EUC-JP but labelled gb2312: kana rows coincide in both, so a
            # Chinese decode full of kana is really Japanese.
            if codec.startswith("gb") and len(_KANA_RE.findall(text)) * 10 > len(text):
                try:
                    return data.decode("euc_jis_2004")
                except UnicodeDecodeError:
                    pass
            return text
    for guess in ("utf-8",):
        try:
            return data.decode(guess)
        except UnicodeDecodeError:
            pass
    return _detect(data, codec)


def _detect(data: bytes, fallback: str | None) -> str:
    from charset_normalizer import from_bytes

    best = from_bytes(data[:65536]).best()
    if best is not None:
        try:
            return data.decode(best.encoding, errors="replace")
        except LookupError:
            pass
    return data.decode(fallback or "cp1252", errors="replace")


_ENCODED_WORD_GAP = re.compile(r"(\?=)\s+(=\?)")


def decode_header_value(value: str | None) -> str:
    """RFC 2047 decoding that survives bad charsets, bad base64 and raw 8-bit headers."""
    if not value:
        return ""
    if isinstance(value, email.header.Header):  # pragma: no cover - compat32 gives str
        value = str(value)
    if "=?" not in value:
        return _unfold(_surrogates_to_text(value))
    try:
        parts = decode_header(_ENCODED_WORD_GAP.sub(r"\1\2", value))
    except (email.errors.HeaderParseError, ValueError, AssertionError, LookupError):
        return _unfold(value)
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            out.append(chunk)
        else:
            out.append(decode_bytes(chunk, charset or "utf-8"))
    return _unfold("".join(out))


_SURROGATE = re.compile("[\udc80-\udcff]")


def _decoded(value: str) -> str:
    """decode_header_value, or "" where even its fallbacks fail."""
    try:
        return decode_header_value(value)
    except Exception:  # noqa: BLE001 - a header field must never fail the analysis
        return ""


def _surrogates_to_text(value: str) -> str:
    # compat32 keeps raw 8-bit header bytes as surrogate escapes: recover them as text.
    if value.isascii() or not _SURROGATE.search(value):
        return value
    raw = value.encode("utf-8", "surrogateescape")
    return decode_bytes(raw, "utf-8")


_FOLD = re.compile(r"\r?\n[ \t]*")


def _unfold(value: str) -> str:
    if "\n" not in value:
        return value.strip()
    return _FOLD.sub(" ", value).strip()


# Controls and every character str.split() takes for whitespace but the address parser does
# not (NBSP, ideographic space, ...): values holding one go to the stdlib parser.
_CONTROLS = r"\x00-\x08\x0a-\x1f\x7f-\x9f\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_NOT_PLAIN = _CONTROLS + r"\t "
_ADDR_SPEC = rf'[^{_NOT_PLAIN}<>()@,;:"\\\[\]]+@[^{_NOT_PLAIN}<>()@,;:"\\\[\]]+'
_WORD = rf'[^"(),:;<>@\[\]\\{_NOT_PLAIN}]'
# The shapes nearly every address header has: "a@b", "<a@b>", "Name <a@b>", "\"Name, Inc\" <a@b>".
# Every part is unambiguous (words and blanks alternate), so matching is linear in the input.
_SIMPLE_ADDRESS = re.compile(
    rf'[ \t]*(?:(?:"([^"\\{_CONTROLS}]*)"|({_WORD}*(?:[ \t]+{_WORD}+)*))[ \t]*<({_ADDR_SPEC})>'
    rf'|({_ADDR_SPEC}))[ \t]*')


def split_address(raw: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of one header value, as email.utils.getaddresses gives them.

    The common shapes are read by one regex; anything else (groups, comments, several
    addresses, quoting tricks) goes to the stdlib parser, which is ten times slower.
    """
    m = _SIMPLE_ADDRESS.fullmatch(raw)
    if m is not None:
        quoted, phrase, addr, bare = m.groups()
        if bare is not None:
            return [("", bare)]
        return [(quoted if quoted is not None else " ".join(phrase.split()), addr)]
    return getaddresses([raw])


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


# --- HTML -----------------------------------------------------------------------------------

_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0+(?:\.0+)?(?:px|pt|em|rem|%)?\s*(?:;|!|$)"
    r"|opacity\s*:\s*0(?:\.0+)?\s*(?:;|!|$)|max-height\s*:\s*0", re.I)
_BLOCKS = ("p,div,br,td,th,tr,li,h1,h2,h3,h4,h5,h6,table,blockquote,section,article,header,footer,"
           "ul,ol,dd,dt,center,hr,title,form,option")
_URL_RE = re.compile(r"""(?:(?:https?|ftp)://|www\.)[^\s<>"'\])}]+""", re.I)
_TRAILING_PUNCT = ".,;:!?)'\""
# Where a _URL_RE match starts: h, f or w (re.I knows no other case of them), then, looked at
# from that character, a scheme or "www." and one character of the URL.
_URL_START = re.compile(r"""[hHfFwW](?<=(?=(?i:(?:https?|ftp)://|www\.)[^\s<>"'\])}])(?s:.))""")


@dataclass(slots=True)
class _Html:
    text: str
    links: list[Link]
    forms: list[Form]


def parse_html(html: str, max_links: int) -> _Html:
    """Visible text, links with their visible text, forms and image link targets."""
    tree = HTMLParser(html)
    tree.strip_tags(["script", "style", "noscript", "template", "head"])
    # Hidden elements carry filler that breaks words apart; drop them from the visible text.
    for node in tree.css("[style]"):
        style = node.attributes.get("style") or ""
        if _HIDDEN_STYLE.search(style):
            node.decompose()
    links: list[Link] = []
    for node in tree.css("a[href], area[href]"):
        if len(links) >= max_links:
            break
        href = (node.attributes.get("href") or "").strip()
        if not href:
            continue
        text = node.text(deep=True, separator=" ", strip=True)
        if not text:
            img = node.css_first("img")
            if img is not None:
                text = img.attributes.get("alt") or ""
        links.append(Link(href=href, text=text[:500], source="html"))
    forms = []
    for node in tree.css("form"):
        inputs = tuple((i.attributes.get("type") or "text").lower() for i in node.css("input"))
        forms.append(Form(action=(node.attributes.get("action") or "").strip(),
                          has_password="password" in inputs, inputs=inputs[:50]))
        if node.attributes.get("action") and len(links) < max_links:
            links.append(Link(href=node.attributes["action"].strip(), text="", source="form"))
    # Block elements end a line; inline ones do not, so "Ama<span>zon</span>" stays one word.
    for node in tree.css(_BLOCKS):
        node.insert_after("\n")
    root = tree.body or tree.root
    text = root.text(separator="", strip=False) if root is not None else ""
    return _Html(text=text, links=links, forms=forms)


def text_links(text: str, max_links: int) -> list[Link]:
    """URLs written out in plain text: what _URL_RE.finditer finds, found faster.

    _URL_RE starts with a case-insensitive alternation, which the regex engine tries at every
    position of the text. _URL_START starts with the class of the characters a URL can start
    with, so the engine skips every other position in C; its lookbehind then checks that a URL
    starts there, and _URL_RE itself reads it. The next search starts where that URL ends, as
    finditer's does, so the matches are finditer's (tested), hostile text included.
    """
    links: list[Link] = []
    pos = 0
    while len(links) < max_links and (hit := _URL_START.search(text, pos)) is not None:
        match = _URL_RE.match(text, hit.start())  # never None: the gate saw a whole match's start
        links.append(Link(href=match.group(0).rstrip(_TRAILING_PUNCT), text="", source="text"))
        pos = match.end()
    return links


# --- attachments ----------------------------------------------------------------------------

def pdf_text(data: bytes, max_pages: int) -> str:
    """Text of the first pages of a PDF; empty on any error (encrypted, broken, odd fonts)."""
    if max_pages <= 0:
        return ""
    try:
        import logging

        from pypdf import PdfReader

        logging.getLogger("pypdf").setLevel(logging.ERROR)
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            return ""
        out = []
        for page in reader.pages[:max_pages]:
            out.append(page.extract_text() or "")
            # Link annotations carry the lure URL in many PDF lures.
            for annot in page.get("/Annots") or []:
                try:
                    uri = annot.get_object().get("/A", {}).get("/URI")
                except Exception:  # noqa: BLE001 - malformed annotation objects
                    uri = None
                if uri:
                    out.append(f" {uri} ")
        return "\n".join(out)
    except Exception:  # noqa: BLE001 - pypdf raises many types on hostile input
        return ""


_DOCX_TEXT = re.compile(rb"<w:t(?:\s[^>]*)?>([^<]*)</w:t>|<w:p[ >]|w:instr[^>]*HYPERLINK\s+&quot;([^&]+)")


def docx_text(data: bytes, limit: int) -> str:
    """Text runs of word/document.xml (and hyperlink targets) from an Office Open XML file."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            parts = []
            for name in ("word/document.xml", "word/_rels/document.xml.rels"):
                try:
                    info = zf.getinfo(name)
                except KeyError:
                    continue
                if info.file_size > limit:
                    continue
                parts.append(zf.read(name))
    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, NotImplementedError, EOFError):
        return ""
    out = []
    for blob in parts:
        for m in _DOCX_TEXT.finditer(blob):
            out.append((m.group(1) or m.group(2) or b" ").decode("utf-8", "replace"))
        out.extend(u.decode("utf-8", "replace") for u in re.findall(rb'Target="(https?://[^"]+)"', blob))
    return " ".join(out)


_RTF_TOKEN = re.compile(r"\\'([0-9a-fA-F]{2})|\\u(-?\d+)\??|\\([a-z]+)(-?\d+)? ?|([{}])|\\([^a-z])|([^\\{}]+)")
_RTF_SKIP_DEST = {"fonttbl", "colortbl", "stylesheet", "info", "pict", "header", "footer", "generator",
                  "themedata", "colorschememapping", "datastore", "latentstyles", "listtable", "rsidtbl"}


def rtf_text(data: bytes, limit: int) -> str:
    """Plain text of an RTF document: control words dropped, hex and Unicode escapes decoded."""
    src = data[:limit].decode("latin-1")
    out: list[str] = []
    skip_depth = 0
    depth = 0
    codepage = "cp1252"
    for m in _RTF_TOKEN.finditer(src):
        hexbyte, uni, word, arg, brace, sym, text = m.groups()
        if brace == "{":
            depth += 1
            continue
        if brace == "}":
            depth -= 1
            if skip_depth and depth < skip_depth:
                skip_depth = 0
            continue
        if skip_depth:
            continue
        if word:
            if word in _RTF_SKIP_DEST or word == "object":
                skip_depth = depth
            elif word == "ansicpg" and arg:
                codepage = f"cp{arg}"
            elif word in ("par", "line", "tab", "cell", "row"):
                out.append(" ")
        elif hexbyte:
            try:
                out.append(bytes([int(hexbyte, 16)]).decode(codepage, "replace"))
            except LookupError:
                out.append(bytes([int(hexbyte, 16)]).decode("cp1252", "replace"))
        elif uni:
            out.append(chr(int(uni) % 65536))
        elif sym == "*":
            skip_depth = depth
        elif text:
            out.append(text.replace("\r", "").replace("\n", ""))
    return "".join(out)


# --- the message ----------------------------------------------------------------------------

_ADDRESS_FIELDS = frozenset({"from", "reply-to", "sender", "return-path"})
_DKIM_D = re.compile(r"(?:^|;)\s*d\s*=\s*([^;\s]+)", re.I)
_HTML_SNIFF = re.compile(rb"<\s*(?:html|body|div|table|a\s|p[\s>]|br|span|font)", re.I)


# A header line as the stdlib's feed parser accepts one (email.feedparser.headerRE), except
# that the name must not be empty: a field name, then a colon.
_FIELD_LINE = re.compile(r"[\041-\071\073-\176]+:")
_HEADER_END = re.compile(r"\r?\n\r?\n")
_LINE_END = re.compile(r"(\r\n|\n)")
_BARE_CR = re.compile(r"\r(?!\n)")
_BOUNDARY_TAIL = re.compile(r"(--)?[ \t]*(?:\r\n|\n|\Z)")  # what may follow "--boundary" on its line
_MAX_SHORTCUT_DEPTH = 20


class _Unsure(Exception):
    """The shortcut cannot vouch for this shape: the stdlib parses the message."""


def message_from_bytes(raw: bytes) -> Message:
    """email.message_from_bytes(raw): the same Message, built without the feed parser when
    every header block is well formed and every multipart well delimited.

    The feed parser walks every line in Python and compiles a regex per boundary; here a
    part's payload is a slice between boundary lines found by str.find. What the shortcut is
    not sure of (message/* types, digests, a bare CR where lines matter, odd header lines, no
    blank line after a header block, missing or doubled boundaries, unusual encodings of a
    multipart, deep nesting) goes to the stdlib, which then builds the whole message.
    """
    text = raw.decode("ascii", "surrogateescape")  # as BytesParser does
    try:
        return _shortcut(text, 0, len(text), 0)
    except Exception:  # noqa: BLE001 - _Unsure, deep recursion, or a header the stdlib chokes on
        return email.message_from_string(text)  # which then raises as the stdlib does


def _shortcut(text: str, start: int, end: int, depth: int) -> Message:
    """The message or part in text[start:end] (start is at the beginning of a line)."""
    sep = _HEADER_END.search(text, start, end)
    if sep is None or sep.start() == start or depth > _MAX_SHORTCUT_DEPTH:
        raise _Unsure
    msg = Message()
    _header_fields(msg, text[start:sep.start()])
    body = sep.end()
    maintype = msg.get_content_maintype()
    if maintype == "message":
        raise _Unsure
    # In a part, the line end before the next boundary belongs to the boundary (RFC 2046).
    part_end = _strip_eol if depth else (lambda value: value)
    if maintype != "multipart":
        msg.set_payload(part_end(text[body:end]))
        return msg
    boundary = msg.get_boundary()
    if (boundary is None or "\n" in boundary or "\r" in boundary  # folded or %0A: never a line
            or msg.get_content_type() == "multipart/digest"
            or str(msg.get("content-transfer-encoding", "8bit")).lower() not in ("7bit", "8bit", "binary")
            or _BARE_CR.search(text, body, end)):
        raise _Unsure
    lines = _boundary_lines(text, "--" + boundary, body, end)
    if len(lines) < 2 or lines[0][2] or not lines[-1][2]:
        raise _Unsure  # no start boundary, no part, or no close boundary: defects
    if lines[0][0] > body:
        # RFC 2046: the line end before a boundary belongs to the boundary.
        msg.preamble = _strip_eol(text[body:lines[0][0]])
    for (_, first, _), (last, _, _) in zip(lines, lines[1:]):
        if first == last:
            raise _Unsure  # doubled boundary lines: the stdlib skips them its own way
        msg.attach(_shortcut(text, first, last, depth + 1))
    epilogue = text[lines[-1][1]:end]
    msg.epilogue = (part_end(epilogue) if epilogue else None) if depth else epilogue
    return msg


def _header_fields(msg: Message, head: str) -> None:
    """Set msg's header fields from a header block as compat32 does; _Unsure on odd lines."""
    if _BARE_CR.search(head):
        raise _Unsure
    pieces = _LINE_END.split(head)  # line, line end, line, ..., line
    name: str | None = None
    value = ""
    for i in range(0, len(pieces), 2):
        line = pieces[i]
        if line[:1] in (" ", "\t"):
            if name is None:
                raise _Unsure
            value += pieces[i - 1] + line  # continuation lines keep their line ends (compat32)
        elif _FIELD_LINE.match(line):
            if name is not None:
                msg.set_raw(name, value)
            name, value = line.split(":", 1)
            value = value.lstrip(" \t")
        else:
            raise _Unsure
    if name is not None:
        msg.set_raw(name, value)


def _boundary_lines(text: str, sep: str, start: int, end: int) -> list[tuple[int, int, bool]]:
    """(line start, line end, is the close boundary) of each boundary line, up to the close one.

    A boundary line starts with sep, then optionally "--", spaces and tabs, then the line end
    or the end of the text (the feed parser's boundaryre, line by line). Only line starts are
    looked at ("\\n" + sep), so text full of sep inside lines costs a C search, not a loop.
    """
    out: list[tuple[int, int, bool]] = []
    after_line_end = "\n" + sep
    if text.startswith(sep, start, end):
        i = start
    else:
        found = text.find(after_line_end, start, end)
        i = found + 1 if found != -1 else -1
    while i != -1:
        tail = _BOUNDARY_TAIL.match(text, i + len(sep), end)
        if tail is not None:
            out.append((i, tail.end(), tail.group(1) is not None))
            if tail.group(1) is not None:
                return out
            found = text.find(after_line_end, tail.end() - 1, end)  # its own "\n" may lead on
        else:
            found = text.find(after_line_end, i, end)
        i = found + 1 if found != -1 else -1
    return out


def _strip_eol(value: str) -> str:
    """value without one line end at its end (no bare CR gets here)."""
    if value.endswith("\r\n"):
        return value[:-2]
    return value[:-1] if value.endswith("\n") else value


def parse_message(raw: bytes, limits: AnalysisConfig) -> ParsedMessage:
    """Parse raw message bytes into facts. Never raises."""
    try:
        return _parse_message(raw, limits)
    except Exception as exc:  # noqa: BLE001 - the last net: facts unknown, but no exception
        return ParsedMessage(raw_headers=(), from_=(), reply_to=(), sender=None, return_path=None, subject="", text="",
                             attachment_text="", links=(), forms=(), attachments=(), dkim_domains=(),
                             defects=(f"unparsable: {type(exc).__name__}",), size=len(raw))


def _parse_message(raw: bytes, limits: AnalysisConfig) -> ParsedMessage:
    defects: list[str] = []
    if raw.startswith(b"From ") and b"\n" in raw[:1000]:
        raw = raw.split(b"\n", 1)[1]  # mbox envelope line, not a header
    try:
        msg = message_from_bytes(raw)
    except Exception as exc:  # noqa: BLE001 - the stdlib raises on a few malformed parameters
        defects.append(f"unparsable: {type(exc).__name__}")
        msg = _header_fields_only(raw)

    headers: list[tuple[str, str]] = []
    raw_values: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        key = str(name).lower()
        value = str(value)
        headers.append((key, value))
        if key in _ADDRESS_FIELDS:
            raw_values.setdefault(key, []).append(_surrogates_to_text(value) if "=?" not in value else value)

    def values(name: str) -> list[str]:
        return raw_values.get(name, [])

    from_ = _addresses(values("from"))
    reply_to = _addresses(values("reply-to"))
    sender = next(iter(_addresses(values("sender"))), None)
    return_path = next(iter(_addresses(values("return-path"))), None)
    subject = next((_decoded(v) for k, v in headers if k == "subject"), "")

    dkim_domains = []
    for k, v in headers:
        if k == "dkim-signature":
            m = _DKIM_D.search(_decoded(v))
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
        parts = _walk(msg, limits, defects)
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


def _parameter(read: Callable[[], str | None]) -> str | None:
    """A header parameter, or None where the stdlib's RFC 2231 decoding raises on a mangled one."""
    try:
        return read()
    except Exception:  # noqa: BLE001 - e.g. TypeError on "boundary*; boundary*1=..."
        return None


def _header_fields_only(raw: bytes) -> Message:
    """The header fields, and the body as one unsplit payload: what is left to analyse when the
    stdlib cannot build the message (a mangled RFC 2231 boundary makes get_boundary() raise).
    Sender, subject and body text must not vanish just because the structure is broken."""
    try:
        return email.parser.BytesParser().parsebytes(raw, headersonly=True)
    except Exception:  # noqa: BLE001
        return Message()


def _walk(msg: Message, limits: AnalysisConfig, defects: list[str]) -> list[Message]:
    """Leaf parts, depth-first, bounded in depth and count (iterative: no recursion limit)."""
    leaves: list[Message] = []
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        if len(leaves) >= limits.max_parts:
            defects.append("too many parts")
            break
        try:
            payload = part.get_payload()
        except Exception:  # noqa: BLE001 - the stdlib decodes some payloads eagerly and can raise
            defects.append("unreadable part")
            continue
        if part.is_multipart() and isinstance(payload, list):
            if depth >= limits.max_depth:
                defects.append("nesting too deep")
                continue
            stack.extend((p, depth + 1) for p in reversed(payload) if isinstance(p, Message))
        else:
            leaves.append(part)
    return leaves


def _part(part: Message, limits: AnalysisConfig, keep, texts, att_texts, links, forms, attachments,
          defects) -> None:
    ctype = (part.get_content_type() or "text/plain").lower()
    disposition = (part.get("Content-Disposition") or "").lower()
    raw_name = _parameter(part.get_filename)
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
    charset = _parameter(part.get_content_charset)
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


def host_of(url: str) -> str:
    """The host of a URL, lower-case, without userinfo and port; '' when there is none."""
    url = url.strip()
    m = re.match(r"^(?:[a-z][a-z0-9+.-]*:)?//([^/?#\\]*)", url, re.I)
    if not m:
        if url.lower().startswith("www."):
            host = re.split(r"[/?#\\]", url, 1)[0]
        else:
            return ""
    else:
        host = m.group(1)
    host = unquote(host).rsplit("@", 1)[-1]
    if host.startswith("["):
        return host[1:].split("]", 1)[0].lower()
    return host.split(":", 1)[0].strip().rstrip(".").lower()
