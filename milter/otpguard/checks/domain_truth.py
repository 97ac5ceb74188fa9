"""Domain truth: a brand From domain without the brand's signature, replies sent elsewhere."""
from __future__ import annotations

from typing import Iterable

from ..model import Hit
from .base import Context


class DomainTruthCheck:
    name = "domain_truth"
    symbols = {
        "FROM_BRAND_DOMAIN": "the From domain is one of the brand's own",
        "FROM_BRAND_UNSIGNED": "the From domain is the brand's but no brand DKIM signature is present",
        "REPLY_TO_OFF_BRAND": "the From domain is the brand's but replies go to a foreign domain",
    }

    def run(self, ctx: Context) -> Iterable[Hit]:
        brand = ctx.brand
        claimed = [a.domain for a in ctx.msg.from_ + ctx.msg.reply_to if brand.owns(a.domain)]
        if not claimed:
            return
        if ctx.from_owned:
            yield Hit(symbol="FROM_BRAND_DOMAIN", strength=1.0, reason=f"from {ctx.from_domain}")
        # The brand signs all of its mail (d=amazon.<tld>): a brand address with no brand
        # signature at all was not sent by the brand, or was rewritten on the way.
        if not ctx.brand_signed:
            yield Hit(symbol="FROM_BRAND_UNSIGNED", strength=1.0, reason=f"no DKIM signature by {claimed[0]}")
        if ctx.from_owned:
            foreign = [a.domain for a in ctx.msg.reply_to if a.domain and not brand.trusts_link(a.domain)]
            if foreign:
                yield Hit(symbol="REPLY_TO_OFF_BRAND", strength=1.0, reason=f"reply-to {foreign[0]}")
