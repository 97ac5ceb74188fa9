"""Callback numbers: phone numbers next to a lure that are not the brand's official ones."""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Iterable

from ..model import Hit
from ..vocabulary import CALL_WORDS

if TYPE_CHECKING:
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
        number = ctx.callback_number
        if number is not None:
            yield Hit(symbol="CALLBACK_PHONE_NUMBER", strength=1.0, reason=f"call {number}")


def callback_number(ctx: Context) -> str | None:
    """A phone number (E.164) next to words asking to call, that is not the brand's; None if none."""
    # Cleaned text: words split by invisible characters ("c\u034fall") must still be found.
    text = ctx.body_clean[:_SCAN_CHARS] + "\n" + ctx.attachment_clean[:_SCAN_CHARS]
    if not any(ch.isdigit() for ch in text) or not CALL_WORDS.search(text):
        return None
    import phonenumbers

    official = _official(ctx.brand.phones)
    for region in _REGIONS:
        try:
            matches = list(phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID,
                                                           max_tries=200))
        except Exception:  # noqa: BLE001 - the matcher has raised on odd input before
            return None
        for m in matches:
            e164 = phonenumbers.format_number(m.number, phonenumbers.PhoneNumberFormat.E164)
            if e164 in official:
                continue
            window = text[max(0, m.start - 100): m.end + 60]
            if CALL_WORDS.search(window):
                return e164
    return None
