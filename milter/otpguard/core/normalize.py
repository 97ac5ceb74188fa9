"""Text normalisation for matching: NFKC, invisible characters out, confusables to a skeleton."""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Characters that render as nothing (or only steer direction) but split words for a naive
# matcher: zero-width space/joiners, bidi marks and embeddings, soft hyphen, combining
# grapheme joiner, Mongolian vowel separator, word joiner, BOM, Hangul fillers, and the
# interlinear annotation and tag characters.
_INVISIBLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u200b\u200c\u200d\u200e\u200f"
    "\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069"
    "\u206a\u206b\u206c\u206d\u206e\u206f\u3164\ufeff\uffa0\ufff9\ufffa\ufffb"
)
_INVISIBLE_RE = re.compile(f"[{_INVISIBLE}\U000e0000-\U000e007f\ufe00-\ufe0f]")
# A combining mark right after a Latin letter that NFKC could not fold into it: used to
# deface words ("Aܿmܿaܿzܿon" uses U+073F SYRIAC RWAHA).
_MARKS = (r"[\u0300-\u036f\u0483-\u0489\u0591-\u05bd\u0610-\u061a\u064b-\u065f\u0711\u0730-\u074a"
          r"\u07eb-\u07f3\u0816-\u082d\u08d3-\u08ff\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_STRAY_MARK_RE = re.compile(rf"(?<=[A-Za-z]){_MARKS}+")
_MARK_RE = re.compile(_MARKS)  # starts with its character set: the engine skips ahead in C


@lru_cache(maxsize=1)
def _skeleton_table() -> dict[int, str]:
    """Map every character confusable with an ASCII letter or digit to that letter (TS 39 data)."""
    from confusable_homoglyphs import confusables

    table: dict[int, str] = {}
    for char, entries in confusables.confusables_data.items():
        if len(char) != 1 or char.isascii():
            continue
        for entry in entries:
            target = entry["c"]
            if len(target) == 1 and target.isascii() and target.isalnum():
                table[ord(char)] = target.lower()
                break
    return table


@lru_cache(maxsize=1)
def _confusable_re() -> re.Pattern[str]:
    """Finds a character _skeleton_table may map: its BMP keys, or any astral character."""
    # A class of the BMP keys compiles to a bitmap the engine tests in C; the astral keys
    # (mathematical letters, mostly) would make it a list of ranges tried one by one, and
    # astral text (emoji, mostly) is rare enough to take to str.translate as it is.
    keys = sorted(c for c in _skeleton_table() if c <= 0xFFFF)
    return re.compile("[" + "".join(re.escape(chr(c)) for c in keys) + "\U00010000-\U0010ffff]")


def looks_ascii(ch: str) -> bool:
    """True for a non-ASCII character that passes for an ASCII letter or digit (a homoglyph)."""
    return ord(ch) in _skeleton_table()


def is_invisible(ch: str) -> bool:
    """True for a character that renders as nothing (see _INVISIBLE; also the braille blank)."""
    return ch == "\u2800" or _INVISIBLE_RE.match(ch) is not None


def strip_invisible(text: str) -> str:
    """Drop characters that render as nothing and stray combining marks on Latin letters."""
    if text.isascii():
        return text  # all of them are outside ASCII
    # Search before replacing: most text has none, and a search that finds nothing is cheap.
    if _INVISIBLE_RE.search(text):
        text = _INVISIBLE_RE.sub("", text)
    if _MARK_RE.search(text):
        text = _STRAY_MARK_RE.sub("", text)
    return text


def count_invisible(text: str) -> int:
    """How many invisible characters and stray marks a text carries."""
    return len(_INVISIBLE_RE.findall(text)) + sum(len(m) for m in _STRAY_MARK_RE.findall(text))


def fold_spaces(text: str) -> str:
    r"""Every run of whitespace as one space: re.sub(r"\s+", " ", text), five times faster."""
    # str.split() and the regex's \s both take whitespace as str.isspace() does.
    folded = " ".join(text.split())
    if not folded:
        return " " if text else ""
    if text[0].isspace():
        folded = " " + folded
    if text[-1].isspace():
        folded += " "
    return folded


def clean(text: str) -> str:
    """NFKC, invisibles out, whitespace folded, case folded: the form lures are matched on."""
    if text.isascii():  # NFKC and the invisible characters leave ASCII as it is
        return fold_spaces(text).casefold()
    text = unicodedata.normalize("NFKC", text)
    text = strip_invisible(text)
    return fold_spaces(text).casefold()


def skeleton(cleaned: str) -> str:
    """Map confusable letters (Greek, Cyrillic, fullwidth, mathematical) to ASCII lowercase."""
    if cleaned.isascii() or _confusable_re().search(cleaned) is None:
        return cleaned  # translate looks every character up in a dict: search first
    return cleaned.translate(_skeleton_table())


# Digit and letter-pair substitutions used in lookalike domains and names (amaz0n, arnazon).
_ASCII_LOOKALIKE = [("rn", "m"), ("nn", "m"), ("vv", "w"), ("0", "o"), ("1", "l"), ("3", "e"), ("4", "a"),
                    ("5", "s"), ("7", "t"), ("@", "a"), ("$", "s"), ("|", "l"), ("i", "l")]


def fold_lookalike(skel: str) -> str:
    """Fold ASCII lookalikes (0 for o, rn for m, i/1 for l) for comparing names and labels."""
    for a, b in _ASCII_LOOKALIKE:
        if a in skel:
            skel = skel.replace(a, b)
    return skel
