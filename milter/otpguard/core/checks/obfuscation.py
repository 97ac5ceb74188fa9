"""Obfuscation: text hidden from filters but not from the reader.

Genuine senders have no reason to split their words with zero-width characters, hide junk
inside a word with CSS, write a name backwards under a right-to-left override, put a
variation selector after each letter, or spell Latin words with Cyrillic letters; filters
that match plain words are what these defeat. The reading layer (parse.py, html.py,
normalize.evidence) names what it found in ParsedMessage.obfuscation; this check weighs it.
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
# Evidence that on its own shows intent: nobody hides text inside words, reverses words or
# glues CSS-generated letters onto words by accident.
_DECISIVE = ("text hidden inside", "override", "variation selectors inside", "CSS-generated text inside",
             "ruby annotations inside", "letters spaced with blank", "invisible characters inside")
_COUNT = re.compile(r"(\d+)")


class ObfuscationCheck:
    name = "obfuscation"
    symbols = {"OBFUSCATED_TEXT": "words split by invisible characters, stray marks, mixed scripts, or text "
                                  "hidden inside words (CSS, bidi overrides, variation selectors)"}

    def run(self, ctx: Context) -> Iterable[Hit]:
        display = " ".join(a.display for a in ctx.msg.from_)
        sample = " ".join((display, ctx.msg.subject, ctx.msg.text[:20000]))
        split = len(_INSIDE_WORD.findall(sample))
        mixed = [w for w in _MIXED.findall(sample) if not w.isdigit()]
        parts = []
        strength = 0.0
        decisive = [e for e in ctx.msg.obfuscation if any(d in e for d in _DECISIVE)]
        if decisive:
            words = sum(int(m.group(1)) for e in decisive if (m := _COUNT.search(e.rsplit(":", 1)[-1])))
            if words >= 3 or any("invisible characters" not in e for e in decisive):
                strength = 1.0 if words >= 2 or len(decisive) >= 2 else 0.7
                parts.extend(decisive[:3])
        if split >= 3 or len(mixed) >= 2 or (split and mixed):
            strength = 1.0
            if split:
                parts.append(f"{split} words split by invisible characters")
            if mixed:
                parts.append(f"{len(mixed)} mixed-script words, e.g. {mixed[0].encode('unicode_escape').decode()[:40]}")
        if parts:
            reason = "; ".join(parts)
            yield Hit(symbol="OBFUSCATED_TEXT", strength=strength,
                      reason=reason.encode("unicode_escape").decode("ascii")[:200] if not reason.isascii() else reason[:200])
