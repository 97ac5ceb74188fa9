"""MIME structure: the message tree from bytes (a fast path for well-formed mail), its leaf parts."""
from __future__ import annotations

import email
import email.parser
import re
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
        return email.parser.BytesParser().parsebytes(raw, headersonly=True)
    except Exception:  # noqa: BLE001
        return Message()


def walk_leaves(msg: Message, limits: AnalysisConfig, defects: list[str]) -> list[Message]:
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
