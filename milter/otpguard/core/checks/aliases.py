"""Alias awareness: users who gave a brand a dedicated alias know that brand mail to any other of
their addresses is not from the brand. Pure: the alias map comes from config ([aliases.map],
recipient -> the alias registered with the brand, both lower case).

ALIAS_MISMATCH fires when mail claims a brand (Decision.brand is set), is not authenticated as
genuine, and at least one envelope recipient has a registered alias but is not that alias.
Genuine brand mail never fires it: authentication comes before suspicion, and a real brand
mail to the main address means the map is out of date, not that the mail is forged. The reason
names no address: the reason goes into a header that every recipient of the message can read.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..model import Decision, Envelope, Hit

ALIAS_MISMATCH = "ALIAS_MISMATCH"
DESCRIPTION = "brand mail sent to a recipient other than the alias that recipient gave the brand"


def _norm(address: str) -> str:
    return address.strip().strip("<>").strip().lower()


def alias_mismatch(decision: Decision, envelope: Envelope, alias_map: Mapping[str, str]) -> str | None:
    """The reason text when brand-claiming mail misses a recipient's registered alias, else None."""
    return alias_mismatch_for(brand=decision.brand, genuine=decision.genuine,
                              rcpt_to=envelope.rcpt_to, alias_map=alias_map)


def alias_mismatch_for(*, brand: str | None, genuine: bool, rcpt_to: Sequence[str],
                       alias_map: Mapping[str, str]) -> str | None:
    """The same, from the parts: for a pipeline that runs it before the Decision exists."""
    if not brand or genuine or not alias_map:
        return None
    recipients = [_norm(r) for r in rcpt_to]
    missed = sum(1 for r in recipients if (alias := alias_map.get(r)) is not None and _norm(alias) != r)
    if not missed:
        return None
    return (f"alias: {brand} mail to {missed} of {len(recipients)} recipient(s) "
            f"not at the alias registered with {brand}")


def alias_hit(reason: str) -> Hit:
    """The check result for a mismatch, for the pipeline to score like any other symbol."""
    return Hit(symbol=ALIAS_MISMATCH, strength=1.0, reason=reason)
