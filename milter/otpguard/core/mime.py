"""MIME structure: the message tree from bytes (a fast path for well-formed mail), its leaf parts."""
from __future__ import annotations

import email
import email.parser
import re
from dataclasses import dataclass
from email.message import Message
from typing import Callable

from .settings import AnalysisConfig

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


class IndexedMessage(Message):
    """email.message.Message whose get() and `in` find a field through an index of the field
    names, built on first use, instead of lower-casing every name on every call (the stdlib's
    scan: a part's Content-Type alone is asked for a dozen times, and mail carries 20 to 40
    fields). The index follows the field list: rebuilt when the list is another or its length
    changed, dropped by replace_header (the one change in place). Values are fetched through
    the policy exactly as Message.get does."""

    _og_index: dict[str, tuple[str, str]] | None = None
    _og_index_of: list | None = None
    _og_index_len = -1

    def _fields(self) -> dict[str, tuple[str, str]]:
        headers = self._headers
        if self._og_index is None or self._og_index_of is not headers or self._og_index_len != len(headers):
            index: dict[str, tuple[str, str]] = {}
            for k, v in headers:
                index.setdefault(k.lower(), (k, v))
            self._og_index, self._og_index_of, self._og_index_len = index, headers, len(headers)
        return self._og_index

    def get(self, name, failobj=None):  # type: ignore[override]
        found = self._fields().get(name.lower())
        return failobj if found is None else self.policy.header_fetch_parse(*found)

    def __getitem__(self, name):
        return self.get(name)

    def __contains__(self, name) -> bool:
        return name.lower() in self._fields()

    def replace_header(self, _name, _value) -> None:
        super().replace_header(_name, _value)
        self._og_index = None

    def _get_params_preserve(self, failobj, header):
        # The parameters of a field value, parsed once per value: get_param, get_filename,
        # get_boundary and get_content_charset each parse the whole field again (email.message,
        # Python 3.11 to 3.13: the private method they all go through). The same values recur
        # mail after mail ("text/plain; charset=utf-8").
        value = self.get(header)
        if type(value) is not str:  # missing, or a Header (undecodable bytes): as the stdlib does
            return super()._get_params_preserve(failobj, header)
        params = _PARAMS.get(value)
        if params is None:
            params = tuple(super()._get_params_preserve(failobj, header))
            if len(_PARAMS) >= _MAX_PARAMS:
                _PARAMS.clear()
            _PARAMS[value] = params
        return list(params)


_PARAMS: dict[str, tuple] = {}
_MAX_PARAMS = 4096


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
        return email.message_from_string(text, _class=IndexedMessage)  # which then raises as the stdlib does


def _shortcut(text: str, start: int, end: int, depth: int) -> Message:
    """The message or part in text[start:end] (start is at the beginning of a line)."""
    sep = _HEADER_END.search(text, start, end)
    if sep is None or sep.start() == start or depth > _MAX_SHORTCUT_DEPTH:
        raise _Unsure
    msg = IndexedMessage()
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


def parameter(read: Callable[[], str | None]) -> str | None:
    """A header parameter, or None where the stdlib's RFC 2231 decoding raises on a mangled one."""
    try:
        return read()
    except Exception:  # noqa: BLE001 - e.g. TypeError on "boundary*; boundary*1=..."
        return None


def header_fields_only(raw: bytes) -> Message:
    """The header fields, and the body as one unsplit payload: what is left to analyse when the
    stdlib cannot build the message (a mangled RFC 2231 boundary makes get_boundary() raise).
    Sender, subject and body text must not vanish just because the structure is broken."""
    try:
        return email.parser.BytesParser(_class=IndexedMessage).parsebytes(raw, headersonly=True)
    except Exception:  # noqa: BLE001
        return IndexedMessage()


@dataclass(frozen=True, slots=True)
class Leaf:
    part: Message
    displayed: bool  # a client shows it in the message view (not an attachment, not a losing alternative)
    depth: int
    inner: bool  # inside an attached message (message/rfc822)


# A walk looks at no more containers and leaves than this, however the limits are set; the
# parts themselves are decoded later, within max_parts.
_HARD_NODES = 10_000
_HARD_DEPTH = 200


def _is_attachment(part: Message) -> bool:
    return "attachment" in str(part.get("content-disposition", "")).lower()


def _preferred(children: list[Message]) -> Message:
    """The alternative a client shows (RFC 2046 5.1.4: the last one it can display; HTML
    before plain text, a multipart/related holding the HTML counts as HTML)."""
    for want in ("text/html", "multipart/"):
        for child in reversed(children):
            ctype = child.get_content_type()
            if ctype == want or (want.endswith("/") and ctype.startswith(want)):
                return child
    for child in reversed(children):
        if child.get_content_type() == "text/plain":
            return child
    return children[-1]


def walk_leaves(msg: Message, limits: AnalysisConfig, defects: list[str],
                reached: list[str] | None = None, attached: list[Message] | None = None) -> list[Leaf]:
    """Leaf parts as a client shows them: the displayed ones first (the preferred alternative,
    inline parts, in order), then the rest (other alternatives, attachments), at most max_parts.

    Displayed parts deeper than max_depth are still read (the reader sees them); others there
    are skipped. Iterative: no recursion limit. What a limit left unread is named in reached;
    the messages inside message/* parts are listed in attached.
    """
    reached = reached if reached is not None else []
    shown: list[Leaf] = []
    rest: list[Leaf] = []
    stack: list[tuple[Message, int, bool, bool]] = [(msg, 0, True, False)]
    nodes = 0
    deep = False
    skipped_deep = 0
    while stack:
        part, depth, displayed, inner = stack.pop()
        nodes += 1
        if nodes > _HARD_NODES:
            reached.append(f"more than {_HARD_NODES} MIME nodes: the rest not read")
            break
        try:
            payload = part.get_payload()
        except Exception:  # noqa: BLE001 - the stdlib decodes some payloads eagerly and can raise
            defects.append("unreadable part")
            continue
        if part.is_multipart() and isinstance(payload, list):
            if depth >= limits.max_depth:
                deep = True
                if not displayed or depth >= _HARD_DEPTH:
                    skipped_deep += 1
                    continue
            children = [p for p in payload if isinstance(p, Message)]
            if not children:
                continue
            ctype = part.get_content_type()
            is_message = part.get_content_maintype() == "message"
            if is_message and attached is not None:
                attached.extend(children[:1])
            if ctype == "multipart/alternative":
                pick = _preferred(children)
                flags = [(c, displayed and c is pick) for c in children]
                flags.sort(key=lambda cf: not cf[1])  # the shown alternative first
            else:
                flags = [(c, displayed and not _is_attachment(c)) for c in children]
            stack.extend((c, depth + 1, f, inner or is_message) for c, f in reversed(flags))
        else:
            leaf = Leaf(part=part, displayed=displayed and not _is_attachment(part), depth=depth, inner=inner)
            (shown if leaf.displayed else rest).append(leaf)
    if deep:
        defects.append("nesting too deep")
        if skipped_deep:
            reached.append(f"MIME nesting deeper than {limits.max_depth}: {skipped_deep} part(s) there not read")
    leaves = shown + rest
    if len(leaves) > limits.max_parts:
        defects.append("too many parts")
        reached.append(f"{len(leaves)} MIME parts: {len(leaves) - limits.max_parts} not read "
                       f"(displayed parts first, max_parts {limits.max_parts})")
        leaves = leaves[: limits.max_parts]
    return leaves


_MAX_SHRINK_SEGMENTS = 20_000


def shrink(raw: bytes, max_bytes: int) -> bytes:
    """raw within max_bytes, keeping every part's header block and the start of every body.

    A message over the parse cap is usually one big attachment; cutting its end would also
    cut what follows the attachment (the lure, in the "big attachment first" trick). Here
    the text between two lines that start with "--" (every boundary line is one) keeps its
    header block, and the bodies share what is left: each keeps all of itself or the same
    cap, the largest that fits (so one big attachment gives up what the others need). A
    message without such lines, or with a flood of them, keeps its front. base64 and
    quoted-printable decode a prefix as well as a whole.
    """
    if len(raw) <= max_bytes:
        return raw
    starts = [0]
    pos = raw.find(b"\n--")
    while pos != -1 and len(starts) < _MAX_SHRINK_SEGMENTS:
        starts.append(pos + 1)
        pos = raw.find(b"\n--", pos + 3)
    if pos != -1 or len(starts) == 1:
        return raw[:max_bytes]
    starts.append(len(raw))
    segments: list[tuple[int, int, int]] = []  # (start, body start, end)
    for a, b in zip(starts, starts[1:]):
        head_end = _HEADER_END_B.search(raw, a, min(b, a + 65536))
        segments.append((a, head_end.end() if head_end is not None else a, b))
    room = max_bytes - sum(body - a for a, body, _ in segments) - 2 * len(segments)
    if room <= 0:
        return raw[:max_bytes]
    lengths = sorted(b - body for _, body, b in segments)
    cap, used = 0, 0
    for i, length in enumerate(lengths):  # the largest cap with sum(min(length, cap)) <= room
        rest = len(lengths) - i
        if used + length * rest <= room:
            used += length
            cap = length
            continue
        cap = (room - used) // rest
        break
    pieces: list[bytes] = []
    for a, body, b in segments:
        if b - body <= cap:
            pieces.append(raw[a:b])
        else:
            pieces.append(raw[a:body + cap] + b"\r\n")
    return b"".join(pieces)[:max_bytes]


_HEADER_END_B = re.compile(rb"\r?\n\r?\n")
