"""Impersonation: a claim to be the brand, by a sender who cannot be the brand, asking for something.

No lure phrase is needed: a mail whose sender or body speaks as Amazon, from a domain that
is not Amazon's (or an Amazon From that its own evidence contradicts), with a button to a
foreign site, a form, a QR code, an attachment to open, a number to call or a reply address
elsewhere, is phish on its own. Lure wording, urgency and obfuscation add to the score; none
of them is the gate.

When the brand is only the topic (the subject, "your Amazon account") and the sender does
not present itself as the brand, a shop or a newsletter may be talking about Amazon: then the
call to action must itself be suspect (a lookalike, an IP address, a disguised link, a
callback number in a refund scam...) and the text must ask for credentials, codes or payment.
"""
from __future__ import annotations

from ..model import Hit
from .base import Context

SYMBOL = "IMPERSONATION"
DESCRIPTION = "speaks as the brand from a sender who cannot be the brand, and asks the reader to act"

# Sender states (pipeline.sender_state): who may speak as the brand.
CANNOT_BE_BRAND = ("foreign", "contradicted")


def impersonation(ctx: Context, sender: str) -> Hit | None:
    """The IMPERSONATION hit, or None. sender is the pipeline's sender state."""
    if sender not in CANNOT_BE_BRAND:
        return None
    actions = ctx.actions
    if not actions:
        return None
    claim = ctx.claim
    asked = ", ".join(a.describe() for a in actions[:2])
    if claim.speaks_as_brand:
        where = ", ".join((claim.identity + claim.speech)[:3])
        return Hit(symbol=SYMBOL, strength=1.0,
                   reason=f"speaks as {ctx.brand.display} ({where}) from {ctx.from_domain or 'no domain'}; "
                          f"asks: {asked}")
    wants = list(ctx.credential_lures)
    if "prize" in ctx.lures:
        wants.append("prize")  # the gift-card scam: a foreign sender giving away the brand's vouchers
    if not (claim.medium and wants):
        return None
    # A shop or a newsletter may write about Amazon and ask for its own things (sign in to the
    # shop, read the guide): the brand as a topic needs a destination that is suspect in itself.
    pressing = [a for a in actions if a.risky]
    if not pressing:
        return None
    where = ", ".join(claim.medium[:2])
    return Hit(symbol=SYMBOL, strength=1.0,
               reason=f"{ctx.brand.display} as the topic ({where}) from {ctx.from_domain or 'no domain'}, "
                      f"asks for {'/'.join(wants[:3])} via {pressing[0].describe()}")
