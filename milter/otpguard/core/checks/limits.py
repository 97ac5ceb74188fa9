"""Limits reached: part of a message that claims the brand was not read.

Every analysis limit (text budget, MIME parts and depth, part and message size, style rules,
pictures too large for QR decoding) is a place a lure can hide. In mail that claims the brand
that is evidence in itself: a phisher who pads a lure past the limits gains nothing by it.
"""
from __future__ import annotations

from typing import Iterable

from ..model import Hit
from .base import Context


class LimitsCheck:
    name = "limits"
    symbols = {"ANALYSIS_LIMIT_REACHED": "a message that claims the brand was not read whole (an analysis limit was reached)"}

    def run(self, ctx: Context) -> Iterable[Hit]:
        limits = ctx.msg.limits
        if limits and ctx.claim.any:
            more = f" (+{len(limits) - 1} more)" if len(limits) > 1 else ""
            yield Hit(symbol="ANALYSIS_LIMIT_REACHED", strength=1.0, reason=f"{limits[0][:150]}{more}")
