"""Header text we write: attacker-proof escaping, folding, verdict values and subject prefixes.

Everything here is pure. Header values we emit are ASCII-only and can never contain a line
break that is not a fold (LF followed by a space), so no input can start a new header field.
Folding uses a bare LF: libmilter passes values through and Postfix stores header lines with
its own line endings (MILTER_README, "header folding").
"""
from __future__ import annotations

import base64
import re
import unicodedata
from email.header import decode_header, make_header

from ..core.normalize import is_invisible, looks_ascii

OWN_PREFIX = "X-OTPGuard-"
VERDICT = "X-OTPGuard-Verdict"
SYMBOLS = "X-OTPGuard-Symbols"
BURST = "X-OTPGuard-Burst"

FOLD_WIDTH = 78            # RFC 5322 2.1.1: lines SHOULD be at most 78 characters
REASON_LIMIT = 120         # characters of one escaped reason
SYMBOLS_LIMIT = 2000       # characters of the whole X-OTPGuard-Symbols value
MAX_SYMBOLS = 30

_SYMBOL_RE = re.compile(r"[^A-Z0-9_]")
# RFC 2047 encoded-word (charset may carry an RFC 2231 language suffix).
_ENCODED_WORD_RE = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def is_own_header(name: str) -> bool:
    """True for header names in our namespace (X-OTPGuard-*), which outsiders must not set."""
    return name.strip().lower().startswith(OWN_PREFIX.lower())


def escape_text(text: str, limit: int = REASON_LIMIT, *, keep_letters: bool = False) -> str:
    """Single-line rendering of untrusted text, truncated to about limit characters.

    Printable ASCII stays; backslash and brackets are escaped; controls, 8-bit and
    surrogate-escaped raw bytes become \\xNN / \\uNNNN, so CR/LF can never reach a header.
    keep_letters keeps printable non-ASCII characters (letters, CJK, punctuation, symbols)
    for the caller to RFC 2047-encode; the result is then not ASCII-only. Characters that
    pass for ASCII or show nothing (Greek Alpha, fullwidth and mathematical letters, combining
    marks, fillers) stay escaped even then: a reason about "\\u0391mazon" must show the
    homoglyph, not hide it. "=?" is escaped too, so that attacker text never becomes an
    encoded-word of its own in a mail reader.
    """
    out: list[str] = []
    used = 0
    prev = ""
    for ch in text:
        o = ord(ch)
        if ch in "\\[]":
            piece = "\\" + ch
        elif ch == "?" and prev == "=":
            piece = "\\x3f"
        elif 0x20 <= o < 0x7F:
            piece = ch
        elif keep_letters and o >= 0xA0 and _shows_as_itself(ch):
            piece = ch
        elif 0xDC80 <= o <= 0xDCFF:  # surrogateescape'd raw byte from undecodable input
            piece = f"\\x{o - 0xDC00:02x}"
        elif o < 0x100:
            piece = f"\\x{o:02x}"
        elif o < 0x10000:
            piece = f"\\u{o:04x}"
        else:
            piece = f"\\U{o:08x}"
        if used + len(piece) > limit:
            out.append("...")
            break
        out.append(piece)
        used += len(piece)
        prev = ch
    return "".join(out)


def _shows_as_itself(ch: str) -> bool:
    """A non-ASCII character a reader can trust: visible, and not mistakable for ASCII."""
    return (unicodedata.category(ch)[0] in "LNPS" and not looks_ascii(ch) and not is_invisible(ch)
            and not any(c.isascii() for c in unicodedata.normalize("NFKC", ch)))


def safe_value(value: str, limit: int = 4000) -> str:
    """Make a trusted-format value (e.g. our Authentication-Results) header-safe.

    Existing folds (LF or CRLF followed by space/tab) are kept; any other CR/LF becomes a
    space; other controls and non-ASCII characters are escaped.
    """
    value = value.replace("\r\n", "\n")
    out: list[str] = []
    for i, ch in enumerate(value):
        if ch == "\n":
            nxt = value[i + 1] if i + 1 < len(value) else ""
            out.append("\n" if nxt in (" ", "\t") else " ")
        elif ch == "\t" or 0x20 <= ord(ch) < 0x7F:
            out.append(ch)
        else:
            out.append(escape_text(ch, 16))
    text = "".join(out).strip()
    return text[:limit]


def fold(value: str, name_len: int, width: int = FOLD_WIDTH) -> str:
    """Fold a one-line value at spaces so lines stay near width; unfolding restores it exactly.

    A fold is inserted as LF before an existing space (RFC 5322 3.2.2), never by adding
    whitespace, so a value unfolds to the same characters.
    """
    words = value.split(" ")
    lines: list[str] = []
    line = ""
    room = width - name_len - 2  # "Name: "
    for word in words:
        candidate = word if not line else line + " " + word
        if line and len(candidate) > room:
            lines.append(line)
            line = word
            room = width - 1  # continuation lines start with the space
        else:
            line = candidate
    lines.append(line)
    return "\n ".join(lines)


def format_score(score: float) -> str:
    """A short, locale-free decimal: 12.5, 10, -1.25 (never exponent notation)."""
    text = f"{score:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def verdict_value(level: str, score: float, *, genuine: bool = False, analysed: bool = True) -> str:
    """The X-OTPGuard-Verdict value: `<level>; score=<n>` plus optional flags."""
    value = f"{escape_text(level, 20)}; score={format_score(score)}"
    if genuine:
        value += "; genuine=yes"
    if not analysed:
        value += "; analysed=no"
    return value


def symbol_name(symbol: str) -> str:
    """Symbols are UPPER_SNAKE; anything else is replaced, never passed through."""
    return _SYMBOL_RE.sub("_", symbol.upper())[:64] or "UNKNOWN"


def reason_text(reason: str, limit: int = REASON_LIMIT) -> str:
    """A reason as header text: ASCII as it is, else UTF-8 encoded-words a mail reader shows.

    The encoded-words stand apart from the brackets around them, as RFC 2047 5(1) asks, so
    "[ =?UTF-8?B?...?= ]" displays as "[ 【重要】アカウント ]" and decodes with any RFC 2047 decoder.
    """
    text = escape_text(reason, limit, keep_letters=True)
    if text.isascii():
        return text
    return " " + " ".join(encoded_words(text)) + " "


def symbols_value(hits: list[tuple[str, float, str]] | tuple[tuple[str, float, str], ...],
                  *, max_symbols: int = MAX_SYMBOLS, reason_limit: int = REASON_LIMIT,
                  total_limit: int = SYMBOLS_LIMIT) -> str:
    """The X-OTPGuard-Symbols value (unfolded): `SYM(score) [reason]; SYM2(score) [reason]`.

    Bounded: at most max_symbols entries and about total_limit characters; the rest is
    summarised as `...(+N more)`.
    """
    entries: list[str] = []
    used = 0
    for i, (symbol, score, reason) in enumerate(hits):
        entry = f"{symbol_name(symbol)}({format_score(score)})"
        if reason:
            entry += f" [{reason_text(reason, reason_limit)}]"
        if i >= max_symbols or used + len(entry) + 2 > total_limit:
            entries.append(f"...(+{len(hits) - i} more)")
            break
        entries.append(entry)
        used += len(entry) + 2
    return "; ".join(entries) if entries else "none"


# --- Subject -----------------------------------------------------------------------------

def _normalise_folding(value: str) -> str:
    """Keep folds, drop stray CR, make every LF a fold, drop blank continuation lines."""
    value = value.replace("\r\n", "\n").replace("\r", "")
    value = re.sub(r"\n(?![ \t])", "\n ", value)
    # A continuation line of only whitespace is not allowed (RFC 5322 3.2.2): drop it.
    value = re.sub(r"\n[ \t]*(?=\n|$)", "", value)
    return value.strip(" \t\n")


def has_raw_bytes(value: str) -> bool:
    """True when the value carries undecodable raw bytes (surrogate escapes)."""
    return any(0xDC80 <= ord(c) <= 0xDCFF for c in value)


def decode_subject(value: str) -> str:
    """The displayed text of a Subject value (RFC 2047 decoded); raw value if undecodable."""
    text = value.replace("\r", "").replace("\n", "")
    if has_raw_bytes(text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    try:
        return str(make_header(decode_header(text)))
    except Exception:  # malformed encoded-words or unknown charsets: compare the raw text
        return text


def encoded_words(text: str, max_bytes: int = 45) -> list[str]:
    """RFC 2047 B-encoded UTF-8 words, each under 75 characters, split on character boundaries."""
    words: list[str] = []
    chunk = ""
    for ch in text:
        if len((chunk + ch).encode("utf-8")) > max_bytes:
            words.append(chunk)
            chunk = ""
        chunk += ch
    if chunk or not words:
        words.append(chunk)
    return ["=?UTF-8?B?" + base64.b64encode(w.encode("utf-8")).decode("ascii") + "?=" for w in words]


def clean_prefix(prefix: str) -> str:
    """A configured prefix without controls or surrounding whitespace."""
    return "".join(c for c in prefix if c == " " or (ord(c) >= 0x20 and ord(c) != 0x7F)).strip()


def subject_has_prefix(value: str, prefix: str) -> bool:
    """True when the displayed subject already starts with the prefix (re-scan, loops)."""
    prefix = clean_prefix(prefix)
    return bool(prefix) and decode_subject(value).lstrip().startswith(prefix)


def rewrite_subject(value: str | None, prefix: str) -> str | None:
    """The new Subject value with prefix in front, or None when nothing is to change.

    Keeps RFC 2047 valid: an ASCII prefix is plain text; a non-ASCII prefix becomes UTF-8
    encoded-words. When the subject starts with an encoded-word, the separating space goes
    inside our encoded-word, because whitespace between adjacent encoded-words is not
    displayed (RFC 2047 6.2). Undecodable raw 8-bit subjects are re-encoded as UTF-8
    encoded-words (with replacement characters) since pymilter can only send valid UTF-8.
    """
    prefix = clean_prefix(prefix)
    if not prefix:
        return None
    if value is None:
        return prefix if prefix.isascii() else " ".join(encoded_words(prefix))
    if subject_has_prefix(value, prefix):
        return None
    original = _normalise_folding(value)
    if has_raw_bytes(original):
        # Decode the encoded-words already there too, so they are not shown literally once
        # the whole subject is re-encoded; controls (an encoded CR/LF) become spaces.
        text = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in decode_subject(original))
        return " ".join(encoded_words(f"{prefix} {text}"))
    if not original:
        return prefix if prefix.isascii() else " ".join(encoded_words(prefix))
    if prefix.isascii():
        return f"{prefix} {original}"
    starts_encoded = _ENCODED_WORD_RE.match(original) is not None
    if starts_encoded:
        return " ".join(encoded_words(prefix + " ")) + " " + original
    return " ".join(encoded_words(prefix)) + " " + original


def burst_value(count: int, notice: str) -> str:
    """The X-OTPGuard-Burst value: `count=<n>; <notice>` (notice RFC 2047-encoded if not ASCII)."""
    text = clean_prefix(notice)
    if text.isascii():
        body = escape_text(text, 400)
    else:
        body = " ".join(encoded_words(text[:300]))
    return fold(f"count={int(count)}; {body}", len(BURST))
