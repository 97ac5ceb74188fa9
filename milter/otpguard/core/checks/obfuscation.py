"""Obfuscation: invisible characters, stray marks and mixed scripts inside words.

Genuine senders have no reason to split their words with zero-width characters or to spell
Latin words with Cyrillic letters; filters that match plain words are what these defeat.
"""
from __future__ import annotations

import re
from typing import Iterable

from ..model import Hit
from .base import Context

_INSIDE_WORD = re.compile(r"[A-Za-z][\u200b-\u200f\u2060-\u2064\ufeff\u034f\u180e]+[A-Za-z]"
                          r"|[A-Za-z][\u0300-\u036f\u0483-\u0489\u0711\u0730-\u074a]+(?=[A-Za-z\s])")
# A word mixing Latin with Cyrillic or Greek letters ("Аccоunt").
_MIXED = re.compile(r"\b(?=[\w]*[A-Za-z])(?=[\w]*[\u0370-\u03ff\u0400-\u04ff])[\w]{3,}\b")


class ObfuscationCheck:
    name = "obfuscation"
    symbols = {"OBFUSCATED_TEXT": "words split by invisible characters, stray marks or mixed scripts"}

    def run(self, ctx: Context) -> Iterable[Hit]:
        display = " ".join(a.display for a in ctx.msg.from_)
        sample = " ".join((display, ctx.msg.subject, ctx.msg.text[:20000]))
        split = len(_INSIDE_WORD.findall(sample))
        mixed = [w for w in _MIXED.findall(sample) if not w.isdigit()]
        if split >= 3 or len(mixed) >= 2 or (split and mixed):
            parts = []
            if split:
                parts.append(f"{split} words split by invisible characters")
            if mixed:
                parts.append(f"{len(mixed)} mixed-script words, e.g. {mixed[0].encode('unicode_escape').decode()[:40]}")
            yield Hit(symbol="OBFUSCATED_TEXT", strength=1.0, reason="; ".join(parts))
