"""The pure analysis core: parsed message (+ optional auth results) in, Decision out.

The order of checks is this table, top to bottom. Authentication comes first: an aligned
DMARC pass on a brand domain makes the message genuine and the suspicion checks stand down.
"""
from __future__ import annotations

from .checks.aliases import ALIAS_MISMATCH, alias_hit, alias_mismatch_for
from .checks.aliases import DESCRIPTION as ALIAS_DESCRIPTION
from .checks.authentication import AuthenticationCheck
from .checks.base import Check, Context
from .checks.brand_claim import BrandClaimCheck
from .checks.domain_truth import DomainTruthCheck
from .checks.links import LinkCheck
from .checks.lures import CODE_KINDS, SYMBOL_OF_KIND, LureCheck
from .checks.limits import LimitsCheck
from .checks.obfuscation import ObfuscationCheck
from .checks.phones import PhoneCheck
from .model import AuthSummary, Decision, Envelope, Hit, Level
from .message import ParsedMessage
from .settings import CoreSettings
from .verdict import level_for, score_hits

AUTHENTICATION: Check = AuthenticationCheck()
SUSPICION: tuple[Check, ...] = (
    BrandClaimCheck(),     # who the sender pretends to be
    DomainTruthCheck(),    # whether a brand From address can be true
    LureCheck(),           # what the text wants from the reader
    LinkCheck(),           # where the links really go
    PhoneCheck(),          # whom the reader is asked to call
    ObfuscationCheck(),    # words hidden from filters
    LimitsCheck(),         # what the analysis limits left unread
)
# A claim made only in the body ("as seen on Amazon") is weaker evidence than a sender that
# names the brand: its suspicion scores count at this factor.
WEAK_CLAIM_FACTOR = 0.5
# Evidence that a brand From address is not what it says. Without any of it, a brand From
# with security-code words is what the brand itself sends (copies that lost their signature
# on the way included): its lure words are not counted against it.
CONTRADICTIONS = frozenset({
    "DMARC_FAIL_BRAND_DOMAIN", "SPF_FAIL_BRAND_DOMAIN", "DKIM_FAIL_BRAND_DOMAIN", "ENVELOPE_OFF_BRAND",
    "FORGED_BRAND_HELO", "REPLY_TO_OFF_BRAND", "LOOKALIKE_FROM_DOMAIN", "BRAND_HOMOGLYPH", "OBFUSCATED_TEXT",
    "LINK_OFF_BRAND", "LINK_LOOKALIKE_DOMAIN", "LINK_TEXT_HREF_MISMATCH", "LINK_IP_LITERAL", "LINK_SHORTENER",
    "LINK_FREE_HOSTING", "LINK_PUNYCODE", "LINK_BRAND_IN_PATH", "LOGIN_FORM", "CALLBACK_PHONE_NUMBER",
})
LURE_SYMBOLS = frozenset(SYMBOL_OF_KIND.values()) | {"CODE_TOKEN", "LURE_IN_ATTACHMENT"}


def all_symbols() -> dict[str, str]:
    """Every symbol the core can emit, with its description."""
    out = {"NOT_ANALYSED": "the message was not analysed (too large)",
           "IMPERSONATION": "claims the brand as sender and asks for credentials, codes, payment or a call",
           ALIAS_MISMATCH: ALIAS_DESCRIPTION}
    for check in (AUTHENTICATION, *SUSPICION):
        out.update(check.symbols)
    return out


def contexts(msg: ParsedMessage, envelope: Envelope, config: CoreSettings) -> list[Context]:
    """One context per brand profile."""
    return [Context(msg, envelope, brand, None, config.analysis.max_links) for brand in config.brands]


def claims_brand(ctxs: list[Context]) -> bool:
    """Does the message claim any protected brand? (Decides whether DNS work is worth it.)"""
    return any(ctx.claim.any for ctx in ctxs)


def decide(ctxs: list[Context], config: CoreSettings, auth: AuthSummary | None) -> Decision:
    """Run the checks for every brand and keep the brand with the strongest case."""
    best: Decision | None = None
    for ctx in ctxs:
        ctx.auth = auth
        decision = _decide_one(ctx, config)
        if best is None or decision.score > best.score or (decision.genuine and not best.genuine and best.score <= 0):
            best = decision
    if best is None:
        return Decision(level=Level.CLEAN, score=0.0, auth=auth)
    return best


def _composites(ctx: Context) -> list[Hit]:
    """Combinations worth more than their parts (rspamd-style composites)."""
    out = []
    wants = list(ctx.credential_lures)
    if not ctx.from_owned and "prize" in ctx.lures:
        # A foreign sender giving away the brand's vouchers is the classic gift-card scam; the
        # brand's own (unsigned, old) marketing may offer rewards, so only foreign senders.
        wants.append("prize")
    if ctx.claim.strong and wants and not (ctx.from_owned and ctx.brand_signed):
        where = ", ".join(ctx.claim.strong[:2])
        out.append(Hit(symbol="IMPERSONATION", strength=1.0,
                       reason=f"claims {ctx.brand.display} ({where}) and asks for {'/'.join(wants[:3])}"))
    return out


def _run(check: Check, ctx: Context, errors: list[str]) -> list[Hit]:
    try:
        return list(check.run(ctx))
    except Exception as exc:  # noqa: BLE001 - one failing check is recorded, the rest still run
        errors.append(f"check {check.name} failed: {type(exc).__name__}: {exc}"[:200])
        return []


def _decide_one(ctx: Context, config: CoreSettings) -> Decision:
    errors: list[str] = []
    hits = _run(AUTHENTICATION, ctx, errors)
    claim = ctx.claim
    if not claim.any and not hits:
        return Decision(level=Level.CLEAN, score=0.0, auth=ctx.auth)
    code_mail = any(k in ctx.lures for k in CODE_KINDS)
    if ctx.genuine:
        score, scored = score_hits(hits, config.scoring)
        return Decision(level=Level.CLEAN, score=score, genuine=True, hits=scored, brand=ctx.brand.id,
                        code_mail=code_mail, auth=ctx.auth, notes=tuple(errors))
    if not claim.strong and not ctx.credential_lures:
        # Mentioning the brand in passing (news, reviews, shopping tips) is not a claim to be it.
        score, scored = score_hits(hits, config.scoring)
        return Decision(level=level_for(score, config.scoring), score=score, hits=scored, auth=ctx.auth,
                        code_mail=code_mail, notes=tuple(errors))
    suspicion: list[Hit] = []
    for check in SUSPICION:
        suspicion.extend(_run(check, ctx, errors))
    if ctx.from_owned and not any(h.symbol in CONTRADICTIONS for h in suspicion + hits):
        suspicion = [h for h in suspicion if h.symbol not in LURE_SYMBOLS]
    else:
        suspicion.extend(_composites(ctx))
    if claim.strong and (reason := alias_mismatch_for(brand=ctx.brand.id, genuine=False,
                                                      rcpt_to=ctx.envelope.rcpt_to, alias_map=config.aliases.map)):
        suspicion.append(alias_hit(reason))
    factor = 1.0 if claim.strong else WEAK_CLAIM_FACTOR
    score_a, scored_a = score_hits(hits, config.scoring)
    score_s, scored_s = score_hits(suspicion, config.scoring, factor)
    score = round(score_a + score_s, 2)
    scored = tuple(sorted(scored_a + scored_s, key=lambda h: (-h.score, h.symbol)))
    return Decision(level=level_for(score, config.scoring), score=score, hits=scored, brand=ctx.brand.id,
                    code_mail=code_mail, auth=ctx.auth, notes=tuple(errors))
