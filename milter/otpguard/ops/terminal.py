"""Text for a terminal: attacker text made inert, long reasons wrapped at word boundaries.

Reasons quote mail (subjects, host names, lure phrases), so anything printed passes through
printable(): ESC, CR and other controls become \\xNN and can neither move the cursor nor
rewrite earlier lines (CVE-class terminal injection). Wrapping never cuts a word: a word longer
than the line stays whole on its own line, and shorten() drops whole words and adds an ellipsis.
"""
from __future__ import annotations

import shutil
import textwrap

ELLIPSIS = "\u2026"


def printable(text: str) -> str:
    """Text safe for a terminal: control characters (ESC, CR, ...) shown as \\xNN."""
    return "".join(c if (c.isprintable() or c == " ") else f"\\x{ord(c) & 0xFF:02x}" for c in text)


def columns(default: int = 100) -> int:
    """The terminal width ($COLUMNS, then the tty), never below 60."""
    return max(60, shutil.get_terminal_size((default, 24)).columns)


def wrap(text: str, width: int, indent: str) -> list[str]:
    """text as lines of at most width (indent included), broken between words only."""
    body = max(20, width - len(indent))
    lines = textwrap.wrap(printable(text), width=body, break_long_words=False, break_on_hyphens=False) or [""]
    return [indent + line for line in lines]


def shorten(text: str, width: int) -> str:
    """text on one line of at most width characters, whole words and an ellipsis when cut."""
    text = " ".join(printable(text).split())
    if len(text) <= width:
        return text
    cut = text[: max(1, width - 1)]
    if " " in cut and text[len(cut)] != " ":
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + ELLIPSIS
