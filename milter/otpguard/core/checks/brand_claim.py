"""Brand claim: does the sender pretend to be the brand without being it?"""
from __future__ import annotations

from typing import Iterable

from ..model import Hit
from .base import Context


class BrandClaimCheck:
    name = "brand_claim"
    symbols = {
        "BRAND_DISPLAY_NAME": "the display name names the brand, the From domain is not the brand's",
        "BRAND_SUBJECT": "the subject names the brand, the From domain is not the brand's",
        "BRAND_IN_SENDER_ADDRESS": "the brand's name inside a foreign sender address",
        "BRAND_HOMOGLYPH": "the brand's name written with lookalike or invisible characters",
        "LOOKALIKE_FROM_DOMAIN": "a sender domain imitates a brand domain",
    }

    def run(self, ctx: Context) -> Iterable[Hit]:
        claim = ctx.claim
        owned = ctx.from_owned or ctx.brand.sends_from(ctx.from_domain)
        display = " ".join(a.display for a in ctx.msg.from_)
        if ctx.relay is not None and ctx.relay[0] == "list":
            # The display name is the author's, kept by the list: judged against the author's domain.
            author = ctx.relay[1].domain
            owned = ctx.brand.owns(author) or ctx.brand.sends_from(author)
        if "display-name" in claim.strong and not owned:
            yield Hit(symbol="BRAND_DISPLAY_NAME", strength=1.0,
                      reason=f"display name {display[:60]!r} from {ctx.from_domain or '(no domain)'}")
        elif "product-name" in claim.strong and not owned and ctx.names_product(ctx.display_clean):
            yield Hit(symbol="BRAND_DISPLAY_NAME", strength=0.6,
                      reason=f"product name in display name {display[:60]!r} from {ctx.from_domain or '(no domain)'}")
        if "subject" in claim.strong and not owned:
            yield Hit(symbol="BRAND_SUBJECT", strength=1.0, reason=f"subject names {ctx.brand.display}")
        if "sender-address" in claim.strong:
            addr = next((a.addr for a in ctx.msg.from_ + ctx.msg.reply_to
                         if any(s in ctx.folded(a.local.lower()) for s in ctx.brand.stems)), "")
            yield Hit(symbol="BRAND_IN_SENDER_ADDRESS", strength=1.0, reason=f"address {addr[:80]}")
        for look in ctx.sender_lookalikes[:1]:
            yield Hit(symbol="LOOKALIKE_FROM_DOMAIN", strength=1.0,
                      reason=f"lookalike ({look.how}): {look.domain} ~ {look.stem}")
        homoglyph = self._homoglyph(ctx)
        if homoglyph:
            yield Hit(symbol="BRAND_HOMOGLYPH", strength=1.0, reason=homoglyph)

    @staticmethod
    def _homoglyph(ctx: Context) -> str | None:
        """The brand's name is there once lookalikes are folded, but not in the plain text."""
        names = ctx.brand_re
        products = ctx.product_re
        for where, raw, cleaned in (("display name", " ".join(a.display for a in ctx.msg.from_), ctx.display_clean),
                                    ("subject", ctx.msg.subject, ctx.subject_clean),
                                    ("body", ctx.msg.text[:20000], None)):
            if not raw:
                continue
            cleaned = cleaned if cleaned is not None else ctx.body_clean[:20000]
            folded = ctx.folded(cleaned)
            plain = ctx.plain(raw)
            for pattern in (names, products):
                if pattern is None:
                    continue
                hidden = len(pattern.findall(folded)) - len(pattern.findall(plain))
                if hidden > 0:
                    sample = next((w for w in raw.split() if names.search(ctx.folded(ctx.plain(w)))
                                   or (products and products.search(ctx.folded(ctx.plain(w))))), raw[:30])
                    return f"{where}: {sample[:40].encode('unicode_escape').decode('ascii')}"
        return None
