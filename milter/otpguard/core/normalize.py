"""Text normalisation for matching: the text as the reader reads it, then folded for comparison.

clean() is the form lures are matched on: NFKC, every character that renders as nothing out
(Unicode's Default_Ignorable_Code_Point and format characters, from the `regex` module's
Unicode data, not hand-written ranges), blanks (U+2800...) as spaces, bidi override runs in the
order the reader sees them, letter-spaced words ("A m a z o n") and CJK words split by spaces
or line breaks joined, kanji that pass for katakana in katakana words (口グイン) folded, then
whitespace and case folded. skeleton() adds confusables and accents folded to ASCII, for brand
names; fold_lookalike() the ASCII lookalikes of domain names (0/o, rn/m).
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Iterable


def _class_of(codepoints: list[int]) -> str:
    """A `re` character class body for a sorted list of code points (ranges where they run)."""
    out: list[str] = []
    i = 0
    while i < len(codepoints):
        j = i
        while j + 1 < len(codepoints) and codepoints[j + 1] == codepoints[j] + 1:
            j += 1
        a, b = re.escape(chr(codepoints[i])), re.escape(chr(codepoints[j]))
        out.append(a if i == j else f"{a}-{b}")
        i = j + 1
    return "".join(out)


# Blanks: characters that render as an empty cell (a space to the reader) but that str.isspace()
# does not know: the braille blank, the Hangul fillers, the musical null notehead. A word
# spaced with them reads as spaced words; removed, they would glue words together.
BLANKS = "\u2800\u115f\u1160\u3164\uffa0\U0001d159"
_BLANK_SET = frozenset(BLANKS)


@lru_cache(maxsize=1)
def _ignorable_codepoints() -> list[int]:
    """Default_Ignorable_Code_Point and general category Cf, from the `regex` module's Unicode
    data (it tracks the current Unicode version), blanks excepted."""
    import regex

    prop = regex.compile(r"[\p{Default_Ignorable_Code_Point}\p{Cf}]")
    return [c for c in range(0x110000) if prop.match(chr(c)) and chr(c) not in _BLANK_SET]


# Kept as a string for tests and callers that list the invisible characters.
_INVISIBLE = _class_of(_ignorable_codepoints())
_INVISIBLE_RE = re.compile(f"[{_INVISIBLE}]")
_BLANK_RE = re.compile(f"[{re.escape(BLANKS)}]")
# Bidi embeddings, overrides and isolates (UAX #9, 2.1-2.4): where they are, what the reader
# sees is reordered; an override reverses what the filter reads.
_BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_BIDI_RE = re.compile(f"[{_BIDI_CONTROLS}]")
_OVERRIDE_RE = re.compile("[\u202d\u202e]")
# Variation selectors (U+FE00-FE0F, U+E0100-E01EF): ignorable in the data above, counted apart
# because one after each letter of a brand name is a known way to hide it.
_VARIATION_RE = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]")
# A combining mark right after a Latin letter that NFKC could not fold into it: used to
# deface words ("Aܿmܿaܿzܿon" uses U+073F SYRIAC RWAHA).
_MARKS = (r"[\u0300-\u036f\u0483-\u0489\u0591-\u05bd\u0610-\u061a\u064b-\u065f\u0711\u0730-\u074a"
          r"\u07eb-\u07f3\u0816-\u082d\u08d3-\u08ff\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_STRAY_MARK_RE = re.compile(rf"(?<=[A-Za-z]){_MARKS}+")
_MARK_RE = re.compile(_MARKS)  # starts with its character set: the engine skips ahead in C
# A mark written apart after an ASCII letter (before NFKC composes it): the reader sees the
# letter with an accent; "pa\u0301ssword" is still "password" to the reader.
_LOOSE_MARK_RE = re.compile(r"(?<=[A-Za-z])[\u0300-\u036f]+")
# Letter spacing: four or more single letters (digits are numbers, "1 2 3 4"), each followed by one space (or
# the blank that replaced one), "A m a z o n" or "s e c u r i t y"; words are then told apart
# by wider gaps, which stay.
_SPACED_RE = re.compile(r"(?<![^\W_])(?:[^\W_] ){3,}[^\W_](?![^\W_])")
_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
# Whitespace between two CJK characters is layout (Japanese and Chinese write no spaces
# between words): "本人\n確認" is the word 本人確認.
_CJK_GAP_RE = re.compile(rf"([{_CJK}])\s+(?=[{_CJK}])")  # a class first: the engine skips ahead in C
_HAS_CJK_RE = re.compile(f"[{_CJK}]")
# Kanji (and one symbol) that pass for katakana: 口/ロ, 力/カ, 工/エ, 二/ニ, 夕/タ, 八/ハ, 卜/ト,
# 一/ー. Folded only beside katakana ("口グイン", "力ード"), so that 入力 or 二つ stay what they are;
# 一 only after katakana (一ポイント, one point, is ordinary), and ヵ/ヶ (一ヶ月) are not katakana here.
_KANA_LOOKALIKES = {"口": "ロ", "力": "カ", "工": "エ", "二": "ニ", "夕": "タ", "八": "ハ", "卜": "ト", "一": "ー"}
_KATAKANA = "\u30a1-\u30f4\u30f7-\u30fa\u30fc"
_KANA_LOOKALIKE_GATE = re.compile("[口力工二夕八卜一]")
_KANA_BEFORE_RE = re.compile(rf"[口力工二夕八卜](?=[{_KATAKANA}])")
_KANA_AFTER_RE = re.compile(rf"[{_KATAKANA}][口力工二夕八卜一]")
_KANA_TABLE = str.maketrans(_KANA_LOOKALIKES)

# Bidi controls, combining marks, blanks: what the rarer steps of clean() look for. (A blank
# that NFKC would produce from another character does not exist: none decomposes to one.)
_READ_GATE = re.compile(f"[{_BIDI_CONTROLS}{re.escape(BLANKS)}{_MARKS[1:-1]}]")  # one class: C-speed scan
_SPACED_GATE = re.compile(r" [^\W\d_] [^\W\d_] ")  # a literal first: the engine skips ahead in C
_SPACED_RE = re.compile(r"(?<![^\W_])(?:[^\W\d_] ){3,}[^\W\d_](?![^\W_])")


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
def _fold_table() -> dict[int, str]:
    """The skeleton table plus Latin letters with accents as their base letter (é -> e,
    Å -> a): "Ámázôn" is the brand's name to a reader, whatever a filter makes of the marks."""
    table = dict(_skeleton_table())
    for cp in list(range(0x00C0, 0x0250)) + list(range(0x1E00, 0x1F00)):
        if cp in table:
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", chr(cp)) if not unicodedata.combining(c))
        if base and base.isascii() and base.isalpha() and base != chr(cp):
            table[cp] = base.lower()
    return table


@lru_cache(maxsize=1)
def _confusable_re() -> re.Pattern[str]:
    """Finds a character _fold_table may map: its BMP keys, or any astral character."""
    # A class of the BMP keys compiles to a bitmap the engine tests in C; the astral keys
    # (mathematical letters, mostly) would make it a list of ranges tried one by one, and
    # astral text (emoji, mostly) is rare enough to take to str.translate as it is.
    keys = sorted(c for c in _fold_table() if c <= 0xFFFF)
    return re.compile("[" + "".join(re.escape(chr(c)) for c in keys) + "\U00010000-\U0010ffff]")


def looks_ascii(ch: str) -> bool:
    """True for a non-ASCII character that passes for an ASCII letter or digit (a homoglyph)."""
    return ord(ch) in _skeleton_table()


def is_invisible(ch: str) -> bool:
    """True for a character that renders as nothing: default-ignorable, a format character, a blank."""
    return ch in _BLANK_SET or _INVISIBLE_RE.match(ch) is not None


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


def visual_order(text: str) -> str:
    """Lines that carry bidi embeddings, overrides or isolates, in the order the reader sees them
    (the Unicode Bidirectional Algorithm, UAX #9, by python-bidi): "\\u202enozamA" reads "Amazon".
    Lines without them are left alone (no reordering of ordinary right-to-left text)."""
    if _BIDI_RE.search(text) is None:
        return text
    from bidi import get_display

    lines = text.split("\n")
    for i, line in enumerate(lines):
        if _BIDI_RE.search(line) is not None:
            try:
                lines[i] = get_display(line)
            except Exception:  # noqa: BLE001 - a line the library refuses stays as written
                pass
    return "\n".join(lines)


def join_spaced(text: str) -> str:
    """Letter-spaced words joined: "A m a z o n" -> "Amazon" (words apart by wider gaps stay apart)."""
    if _SPACED_GATE.search(text) is None:
        return text
    return _SPACED_RE.sub(lambda m: m.group(0).replace(" ", ""), text)


def join_cjk(text: str) -> str:
    """Whitespace between CJK characters removed: "本人\\n確認" -> "本人確認"."""
    if _HAS_CJK_RE.search(text) is None:
        return text
    return _CJK_GAP_RE.sub(r"\1", text)


def fold_kana(text: str) -> str:
    """Kanji that pass for katakana, beside katakana, as that katakana: "口グイン" -> "ログイン"."""
    if _KANA_LOOKALIKE_GATE.search(text) is None:
        return text
    swap = lambda m: m.group(0).translate(_KANA_TABLE)  # noqa: E731
    # After first, then before: "パスワ一ド" and "口グイン"; patterns start with a class (C-speed skips).
    return _KANA_BEFORE_RE.sub(swap, _KANA_AFTER_RE.sub(swap, text))


def fold_accents(text: str) -> str:
    """Latin letters with accents as their base letter, lower-case (the skeleton's accent part)."""
    return text.translate(_fold_table()) if not text.isascii() else text


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
    """The text as read, for matching lures: bidi runs in visual order, NFKC, invisibles out,
    blanks as spaces, letter-spaced and split CJK words joined, katakana lookalikes folded,
    whitespace folded, case folded."""
    if text.isascii():  # none of the Unicode steps changes ASCII
        return fold_spaces(join_spaced(text)).casefold()
    if _READ_GATE.search(text) is not None:  # one search for the rare steps below
        text = visual_order(text)
        if _MARK_RE.search(text):
            text = _LOOSE_MARK_RE.sub("", text)
        text = unicodedata.normalize("NFKC", text)
        if _BLANK_RE.search(text):
            text = _BLANK_RE.sub(" ", text)
    else:
        text = unicodedata.normalize("NFKC", text)
    text = strip_invisible(text)
    if _HAS_CJK_RE.search(text):
        text = fold_kana(_CJK_GAP_RE.sub(r"\1", text))
    return fold_spaces(join_spaced(text)).casefold()


def may_hold(text: str, forms: tuple[str, ...]) -> bool:
    """False only when skeleton(clean(text)) certainly holds none of forms (cleaned, skeleton
    forms): a test that spares clean() the text of most mail.

    Text whose every non-ASCII character is inert (see _inert: no letter or digit, no mark, no
    invisible or bidi character, no confusable; a no-break space, ©, ’, •) is read here as
    clean() reads it: each inert character replaced by its NFKC form, then, without letter
    spacing, clean() folds only whitespace and case, and skeleton() changes nothing. A form
    without whitespace is then in the result exactly when it is in the lower-cased text. Any
    other text (Unicode tricks, letter-spaced words, other scripts) may hold them."""
    wanted = _shortcut_forms(forms)
    if wanted is None:
        return True  # whitespace folding could make or unmake one: no shortcut
    if not text.isascii():
        others = [c for c in set(text) if ord(c) > 127]
        if not all(_inert(c) for c in others):
            return True
        for c in others:
            if (n := unicodedata.normalize("NFKC", c)) != c:
                text = text.replace(c, n)
    if _SPACED_GATE.search(text) is not None:
        return True
    lowered = text.lower()
    return any(f in lowered for f in wanted)


@lru_cache(maxsize=64)
def _shortcut_forms(forms: tuple[str, ...]) -> tuple[str, ...] | None:
    """The forms to look for, None when one is empty or holds whitespace (no shortcut then)."""
    if any(not f or any(c.isspace() for c in f) for f in forms):
        return None
    return shortest_forms(forms)


def shortest_forms(forms: Iterable[str]) -> tuple[str, ...]:
    """The forms that hold no other one ("amazon.co.jp" holds "amazon"): text holding a form
    holds one of these, so a substring test of these alone rules text out."""
    distinct = tuple(dict.fromkeys(forms))
    return tuple(f for f in distinct if not any(o != f and o in f for o in distinct))


@lru_cache(maxsize=4096)
def _inert(ch: str) -> bool:
    """A non-ASCII character clean() and skeleton() pass through as a non-letter: its NFKC form
    holds no letter or digit, and neither it nor its NFKC form is invisible, a blank, a bidi
    control, a combining mark or a confusable of an ASCII letter."""
    nfkc = unicodedata.normalize("NFKC", ch)
    table = _fold_table()
    for c in {ch, *nfkc}:
        if c.isalnum() or c in _BLANK_SET or c in _BIDI_CONTROLS or ord(c) in table:
            return False
        if unicodedata.category(c) in ("Mn", "Mc", "Me", "Cf", "Co", "Cn", "Cs") or _INVISIBLE_RE.match(c):
            return False
    return True


def skeleton(cleaned: str) -> str:
    """Map confusable letters (Greek, Cyrillic, fullwidth, mathematical) and accented Latin
    letters to ASCII lowercase."""
    if cleaned.isascii() or _confusable_re().search(cleaned) is None:
        return cleaned  # translate looks every character up in a dict: search first
    table = _fold_table()
    if len(cleaned) > 2000 and len(_confusable_re().findall(cleaned, 0, 2000)) < 100:
        # Text in a language with a few accented letters: the regex engine finds them in C and
        # only they are looked up (7x faster than translate on such text); dense text is
        # translated whole (a callback per character would cost more).
        return _confusable_re().sub(lambda m: table.get(ord(m.group()), m.group()), cleaned)
    return cleaned.translate(table)


# Digit and letter-pair substitutions used in lookalike domains and names (amaz0n, arnazon).
_ASCII_LOOKALIKE = [("rn", "m"), ("nn", "m"), ("vv", "w"), ("0", "o"), ("1", "l"), ("3", "e"), ("4", "a"),
                    ("5", "s"), ("7", "t"), ("@", "a"), ("$", "s"), ("|", "l"), ("i", "l")]


def fold_lookalike(skel: str) -> str:
    """Fold ASCII lookalikes (0 for o, rn for m, i/1 for l) for comparing names and labels."""
    for a, b in _ASCII_LOOKALIKE:
        if a in skel:
            skel = skel.replace(a, b)
    return skel


# --- evidence: what was hidden from a filter but not from the reader -------------------------

# Letters of scripts that never need a joiner inside a word (Latin, kana, CJK): zero-width
# joiners are ordinary inside Arabic, Persian and Indic words, and emoji sequences use them.
_PLAIN_LETTER = r"A-Za-z\u00c0-\u024f\u3040-\u30ff\u4e00-\u9fff"
_INSIDE_WORD_INVISIBLE = re.compile(rf"[{_PLAIN_LETTER}]([{_INVISIBLE}]+)(?=[{_PLAIN_LETTER}])")  # class first
_LETTER_MARKS_RE = re.compile(rf"[A-Za-z]{_MARKS}+")  # a class first: C-speed skips
_ANY_TRICK_RE = re.compile(f"[{_INVISIBLE}{re.escape(BLANKS)}{_MARKS[1:-1]}]")  # one class: C-speed scan
_BLANK_SPACED_RE = re.compile(rf"[^\W_][{re.escape(BLANKS)}][^\W_][{re.escape(BLANKS)}][^\W_]")


def evidence(text: str, where: str) -> list[str]:
    """Short phrases naming Unicode tricks found in text ("body: right-to-left override"):
    characters a reader never sees, inside words; overrides that reverse text; blanks between
    letters; marks stacked on Latin letters. ASCII text has none of them."""
    if text.isascii() or _ANY_TRICK_RE.search(text) is None:
        return []
    out: list[str] = []
    if (n := len(_OVERRIDE_RE.findall(text))):
        out.append(f"{where}: {n} right-to-left/left-to-right override(s)")
    if _INVISIBLE_RE.search(text) is not None:
        inside = _INSIDE_WORD_INVISIBLE.findall(text)
        variation = sum(1 for run in inside if _VARIATION_RE.search(run))
        if variation:
            out.append(f"{where}: variation selectors inside {variation} word(s)")
        if len(inside) > variation:
            out.append(f"{where}: invisible characters inside {len(inside) - variation} word(s)")
    if _BLANK_RE.search(text) is not None and _BLANK_SPACED_RE.search(text) is not None:
        out.append(f"{where}: letters spaced with blank characters")
    if _MARK_RE.search(text) is not None:
        marks = len(_LETTER_MARKS_RE.findall(text))
        if marks >= 3:
            out.append(f"{where}: combining marks on {marks} Latin letters")
    return out
