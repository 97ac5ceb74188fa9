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
        "DKIM_PERMERROR_BRAND_DOMAIN": "a brand-domain DKIM signature without a usable key or well-formed tags "
                                       "(information: not a failed signature)",
        "FORGED_AUTH_RESULTS": "Authentication-Results in a trusted host's name below the trust boundary: "
                               "written before the mail reached that host",
    }

    def run(self, ctx: Context) -> Iterable[Hit]:
        if ctx.forged_results:
            # Whatever they claim is ignored (the engine never believes them); that someone
            # wrote results in the name of our own border host is evidence in itself.
            yield Hit(symbol="FORGED_AUTH_RESULTS", strength=1.0,
                      reason=f"Authentication-Results of {ctx.forged_results[0]} below the trust boundary")
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
        # DNS failures are never evidence (issue 15): the reasons use the words of our own
        # Authentication-Results header, and one DNS problem yields one weightless symbol.
        temp = [f"dkim=temperror d={d.domain}" for d in auth.dkim if d.result == "temperror"]
        temp += [f"{m}=temperror" for m, r in (("spf", auth.spf), ("dmarc", auth.dmarc)) if r == "temperror"]
        if temp:
            yield Hit(symbol="AUTH_TEMPERROR", strength=1.0, reason=f"{', '.join(temp)} for {from_domain} ({src})")
        if auth.spf == "fail" and brand.owns(auth.spf_domain or from_domain):
            yield Hit(symbol="SPF_FAIL_BRAND_DOMAIN", strength=1.0, reason=f"spf=fail {auth.spf_domain or from_domain}")
        failed = [d.domain for d in auth.dkim if d.result == "fail" and brand.owns(d.domain)]
        if failed:
            yield Hit(symbol="DKIM_FAIL_BRAND_DOMAIN", strength=1.0, reason=f"dkim=fail d={failed[0]}")
        # RFC 8601 2.7.1 keeps permerror (no key, malformed signature) apart from fail (a
        # signature that does not verify): it proves no tampering, and DMARC judges the rest.
        broken = [d.domain for d in auth.dkim if d.result == "permerror" and brand.owns(d.domain)]
        if broken:
            yield Hit(symbol="DKIM_PERMERROR_BRAND_DOMAIN", strength=1.0, reason=f"dkim=permerror d={broken[0]}")
