"""Header field values: RFC 2047 decoding, unfolding, 8-bit recovery, address splitting."""
from __future__ import annotations

import email
import email.errors
import email.header
import re
from email.header import decode_header
from email.utils import getaddresses

from .charset import decode_bytes


_ENCODED_WORD_GAP = re.compile(r"(\?=)\s+(=\?)")


def decode_header_value(value: str | None) -> str:
    """RFC 2047 decoding that survives bad charsets, bad base64 and raw 8-bit headers."""
    if not value:
        return ""
    if isinstance(value, email.header.Header):  # pragma: no cover - compat32 gives str
        value = str(value)
    if "=?" not in value:
        return _unfold(surrogates_to_text(value))
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


def decoded(value: str) -> str:
    """decode_header_value, or "" where even its fallbacks fail."""
    try:
        return decode_header_value(value)
    except Exception:  # noqa: BLE001 - a header field must never fail the analysis
        return ""


def surrogates_to_text(value: str) -> str:
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
