"""Callback numbers: phone numbers next to a lure that are not the brand's official ones."""
from __future__ import annotations

from functools import lru_cache
from typing import Iterable

from ..model import Hit
from ..vocabulary import CALL_WORDS
from .base import Context

# Regions tried when a number is written without a country code.
_REGIONS = ("US", "JP", "GB", "DE", "FR")
_SCAN_CHARS = 20000


@lru_cache(maxsize=8)
def _official(phones: tuple[str, ...]) -> frozenset[str]:
    import phonenumbers

    out = set()
    for p in phones:
        try:
            out.add(phonenumbers.format_number(phonenumbers.parse(p, None), phonenumbers.PhoneNumberFormat.E164))
        except phonenumbers.NumberParseException:
            continue
    return frozenset(out)


class PhoneCheck:
    name = "phones"
    symbols = {"CALLBACK_PHONE_NUMBER": "a phone number to call that is not one of the brand's"}

    def run(self, ctx: Context) -> Iterable[Hit]:
        if not ctx.lures:
            return
        # Cleaned text: words split by invisible characters ("c\u034fall") must still be found.
        text = ctx.body_clean[:_SCAN_CHARS] + "\n" + ctx.attachment_clean[:_SCAN_CHARS]
        if not any(ch.isdigit() for ch in text):
            return
        import phonenumbers

        official = _official(ctx.brand.phones)
        low = text
        for region in _REGIONS:
            try:
                matches = list(phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID,
                                                               max_tries=200))
            except Exception:  # noqa: BLE001 - the matcher has raised on odd input before
                return
            for m in matches:
                e164 = phonenumbers.format_number(m.number, phonenumbers.PhoneNumberFormat.E164)
                if e164 in official:
                    continue
                window = low[max(0, m.start - 100): m.end + 60]
                if CALL_WORDS.search(window):
                    yield Hit(symbol="CALLBACK_PHONE_NUMBER", strength=1.0, reason=f"call {e164}")
                    return
