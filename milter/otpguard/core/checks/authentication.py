"""Sender authentication evidence: DMARC/SPF/DKIM results for a brand From domain.

Runs first: an aligned DMARC pass on a brand domain marks the message genuine and the
suspicion checks stand down (rspamd's phishing module likewise skips DMARC-aligned mail).
"""
from __future__ import annotations

from typing import Iterable

from ..model import Hit
from .base import Context


class AuthenticationCheck:
    name = "authentication"
    symbols = {
        "DMARC_FAIL_BRAND_DOMAIN": "the From domain is the brand's and DMARC failed",
        "SPF_FAIL_BRAND_DOMAIN": "SPF failed for a brand domain",
        "DKIM_FAIL_BRAND_DOMAIN": "a DKIM signature by a brand domain failed",
        "AUTH_GENUINE": "aligned DMARC pass on a brand domain: genuine",
        "AUTH_TEMPERROR": "authentication could not be checked (DNS failure)",
    }

    def run(self, ctx: Context) -> Iterable[Hit]:
        auth = ctx.auth
        if auth is None:
            return
        brand = ctx.brand
        from_domain = auth.from_domain or ctx.from_domain
        if not brand.owns(from_domain):
            # A pass for a foreign domain proves only that the foreign domain sent it.
            return
        src = auth.source
        if auth.dmarc == "pass":
            ctx.genuine = True
            yield Hit(symbol="AUTH_GENUINE", strength=1.0,
                      reason=f"dmarc=pass {from_domain} via {auth.dmarc_aligned or 'aligned identifier'} ({src})")
            return
        if auth.dmarc == "fail":
            policy = f" p={auth.dmarc_policy}" if auth.dmarc_policy else ""
            yield Hit(symbol="DMARC_FAIL_BRAND_DOMAIN", strength=1.0, reason=f"dmarc=fail {from_domain}{policy} ({src})")
            return
        if "temperror" in (auth.dmarc, auth.spf) or any(d.result == "temperror" for d in auth.dkim):
            yield Hit(symbol="AUTH_TEMPERROR", strength=1.0, reason=f"temperror for {from_domain} ({src})")
        if auth.spf == "fail" and brand.owns(auth.spf_domain or from_domain):
            yield Hit(symbol="SPF_FAIL_BRAND_DOMAIN", strength=1.0, reason=f"spf=fail {auth.spf_domain or from_domain}")
        failed = [d.domain for d in auth.dkim if d.result in ("fail", "permerror") and brand.owns(d.domain)]
        if failed:
            yield Hit(symbol="DKIM_FAIL_BRAND_DOMAIN", strength=1.0, reason=f"dkim=fail d={failed[0]}")
