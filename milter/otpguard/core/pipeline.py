"""The pure analysis core: parsed message (+ optional auth results) in, Decision out.

The decision model is identity, then intent (docs/architecture.md):
1. Authentication first: an aligned DMARC pass on a brand domain makes the message genuine
   and the suspicion checks stand down.
2. The claim: where the message speaks as the brand (checks/claim.py). No claim, no more work.
3. Can the sender be the brand? sender_state() below: a foreign domain cannot; a brand From
   that its own evidence contradicts cannot; an authenticated brand (or brand-sending) domain
   can; an unverified brand From that nothing contradicts may.
4. The suspicion checks run in the order of the SUSPICION table, top to bottom.
5. Impersonation (checks/impersonation.py): a claim from a sender who cannot be the brand plus
   any call to action is phish on its own; lure intent, urgency and obfuscation add weight.
"""
from __future__ import annotations

from typing import Callable

from .checks.aliases import ALIAS_MISMATCH, alias_hit, alias_mismatch_for
from .checks.aliases import DESCRIPTION as ALIAS_DESCRIPTION
from .checks.authentication import AuthenticationCheck
from .checks.base import Check, Context
from .checks.impersonation import DESCRIPTION as IMPERSONATION_DESCRIPTION
from .checks.impersonation import SYMBOL as IMPERSONATION
from .checks.impersonation import impersonation
from .checks.brand_claim import BrandClaimCheck
from .checks.domain_truth import DomainTruthCheck
from .checks.links import LinkCheck
from .checks.lures import CODE_KINDS, SYMBOL_OF_KIND, LureCheck
from .checks.limits import LimitsCheck
from .checks.obfuscation import ObfuscationCheck
from .checks.phones import PhoneCheck
from .checks.test_token import PhishTestTokenCheck
from .model import AuthSummary, Decision, Envelope, Hit, Level
from .message import ParsedMessage
from .parse import complete
from .policy import SYMBOLS as POLICY_SYMBOLS
from .settings import CoreSettings
from .verdict import level_for, score_hits

AUTHENTICATION: Check = AuthenticationCheck()
TEST_TOKEN: Check = PhishTestTokenCheck()  # runs beside authentication: a test message claims no brand
SUSPICION: tuple[Check, ...] = (
    BrandClaimCheck(),     # who the sender pretends to be
    DomainTruthCheck(),    # whether a brand From address can be true
    LureCheck(),           # what the text wants from the reader
    LinkCheck(),           # where the links really go
    PhoneCheck(),          # whom the reader is asked to call
    ObfuscationCheck(),    # words hidden from filters
    LimitsCheck(),         # what the analysis limits left unread
)
# A claim where the brand is only the topic or a mention ("as seen on Amazon", a subject about
# Amazon) is weaker evidence than a sender or body that speaks as the brand: its suspicion
# scores count at this factor.
WEAK_CLAIM_FACTOR = 0.5
# Evidence that a brand From address is not what it says. Without any of it, a brand From
# with security-code words is what the brand itself sends (copies that lost their signature
# on the way included): its lure words are not counted against it.
CONTRADICTIONS = frozenset({
    "DMARC_FAIL_BRAND_DOMAIN", "SPF_FAIL_BRAND_DOMAIN", "DKIM_FAIL_BRAND_DOMAIN", "ENVELOPE_OFF_BRAND",
    "FORGED_BRAND_HELO", "REPLY_TO_OFF_BRAND", "LOOKALIKE_FROM_DOMAIN", "BRAND_HOMOGLYPH", "OBFUSCATED_TEXT",
    "LINK_OFF_BRAND", "LINK_LOOKALIKE_DOMAIN", "LINK_TEXT_HREF_MISMATCH", "LINK_IP_LITERAL", "LINK_SHORTENER",
    "LINK_FREE_HOSTING", "LINK_PUNYCODE", "LINK_BRAND_IN_PATH", "LOGIN_FORM", "CALLBACK_PHONE_NUMBER",
    "FORGED_AUTH_RESULTS",  # issue 15: results forged in a trusted host's name
})
LURE_SYMBOLS = frozenset(SYMBOL_OF_KIND.values()) | {"CODE_TOKEN", "LURE_IN_ATTACHMENT"}


def all_symbols() -> dict[str, str]:
    """Every symbol the core can emit, with its description."""
    out = {"NOT_ANALYSED": "the message was not analysed (too large)",
           IMPERSONATION: IMPERSONATION_DESCRIPTION,
           ALIAS_MISMATCH: ALIAS_DESCRIPTION}
    for check in (AUTHENTICATION, TEST_TOKEN, *SUSPICION):
        out.update(check.symbols)
    out.update(POLICY_SYMBOLS)  # the allow/deny lists (core/policy.py), applied by the engine
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
    whole: list[ParsedMessage] = []  # the message with its pending facts read, once for all brands

    def completed(msg: ParsedMessage) -> ParsedMessage:
        if not whole:
            whole.append(complete(msg, config.analysis.max_links))
        return whole[0]

    for ctx in ctxs:
        ctx.auth = auth
        decision = _decide_one(ctx, config, completed)
        if best is None or decision.score > best.score or (decision.genuine and not best.genuine and best.score <= 0):
            best = decision
    if best is None:
        return Decision(level=Level.CLEAN, score=0.0, auth=auth)
    return best


def sender_state(ctx: Context, hits: list[Hit]) -> str:
    """Can the sender be the brand?

    brand: an authenticated brand domain (genuine, or a verified brand signature on a brand From);
    service: one of the brand's sending domains (its service notices, whose text may carry a
      customer's words): never an impersonator, but its content is still judged;
    unverified: a brand From nobody verified and nothing contradicts;
    contradicted: a brand From with evidence it is not the brand's (failed authentication,
      foreign envelope, forged HELO, lookalikes, foreign links...);
    foreign: any other From domain: it cannot be the brand.
    """
    if ctx.genuine or (ctx.from_owned and ctx.brand_signed):
        return "brand"
    contradicted = any(h.symbol in CONTRADICTIONS for h in hits)
    if ctx.relay is not None:
        # A list copy or a forward: the author is judged, and nothing of the relay vouches for it.
        author = ctx.relay[1].domain
        if ctx.brand.owns(author):
            return "contradicted" if contradicted else "unverified"
        return "service" if ctx.brand.sends_from(author) else "foreign"
    if ctx.from_owned:
        return "contradicted" if contradicted else "unverified"
    if ctx.brand.sends_from(ctx.from_domain):
        return "service"
    return "foreign"


def _composites(ctx: Context, sender: str) -> list[Hit]:
    """Combinations worth more than their parts (rspamd-style composites)."""
    hit = impersonation(ctx, sender)
    return [hit] if hit is not None else []


def _run_composites(ctx: Context, sender: str, errors: list[str]) -> list[Hit]:
    try:
        return _composites(ctx, sender)
    except Exception as exc:  # noqa: BLE001 - recorded like a failing check
        errors.append(f"check composites failed: {type(exc).__name__}: {exc}"[:200])
        return []


def _run(check: Check, ctx: Context, errors: list[str]) -> list[Hit]:
    try:
        return list(check.run(ctx))
    except Exception as exc:  # noqa: BLE001 - one failing check is recorded, the rest still run
        errors.append(f"check {check.name} failed: {type(exc).__name__}: {exc}"[:200])
        return []


def _decide_one(ctx: Context, config: CoreSettings, completed: Callable[[ParsedMessage], ParsedMessage]) -> Decision:
    errors: list[str] = []
    hits = _run(AUTHENTICATION, ctx, errors) + _run(TEST_TOKEN, ctx, errors)
    claim = ctx.claim
    if not claim.any and not hits:
        return Decision(level=Level.CLEAN, score=0.0, auth=ctx.auth)
    if ctx.msg.pending:
        # Everything below may read the links written in the text or the Unicode evidence:
        # read now (parse.complete), for this message only.
        try:
            ctx.msg = completed(ctx.msg)
        except Exception as exc:  # noqa: BLE001 - judged on the facts already read
            errors.append(f"reading links and evidence failed: {type(exc).__name__}: {exc}"[:200])
    code_mail = any(k in ctx.lures for k in CODE_KINDS)
    if ctx.genuine:
        score, scored = score_hits(hits, config.scoring)
        return Decision(level=Level.CLEAN, score=score, genuine=True, hits=scored, brand=ctx.brand.id,
                        code_mail=code_mail, auth=ctx.auth, notes=tuple(errors))
    if not claim.strong and not (ctx.credential_lures and any(a.risky for a in ctx.actions)):
        # Mentioning the brand in passing (news, reviews, shopping tips) is not a claim to be it,
        # unless the text asks for credentials towards a suspect destination.
        score, scored = score_hits(hits, config.scoring)
        return Decision(level=level_for(score, config.scoring), score=score, hits=scored, auth=ctx.auth,
                        code_mail=code_mail, notes=tuple(errors))
    suspicion: list[Hit] = []
    for check in SUSPICION:
        suspicion.extend(_run(check, ctx, errors))
    sender = sender_state(ctx, suspicion + hits)
    composites: list[Hit] = []
    if sender in ("brand", "unverified", "service") and not any(h.symbol in CONTRADICTIONS for h in suspicion + hits):
        # What the brand itself says ("your verification code is ...") proves nothing against a
        # brand sender that nothing contradicts.
        suspicion = [h for h in suspicion if h.symbol not in LURE_SYMBOLS]
    elif not claim.speaks_as_brand and ctx.warns_about_fraud:
        # A text about phishing that quotes a lure (an awareness newsletter, a bank's warning)
        # does not speak as the brand: the lure words it quotes are not its own.
        suspicion = [h for h in suspicion if h.symbol not in LURE_SYMBOLS]
        composites = _run_composites(ctx, sender, errors)
    else:
        composites = _run_composites(ctx, sender, errors)
    if claim.strong and (reason := alias_mismatch_for(brand=ctx.brand.id, genuine=False,
                                                      rcpt_to=ctx.envelope.rcpt_to, alias_map=config.aliases.map)):
        suspicion.append(alias_hit(reason))
    factor = 1.0 if claim.speaks_as_brand else WEAK_CLAIM_FACTOR
    score_a, scored_a = score_hits(hits + composites, config.scoring)  # the decision itself: never discounted
    score_s, scored_s = score_hits(suspicion, config.scoring, factor)
    score = round(score_a + score_s, 2)
    scored = tuple(sorted(scored_a + scored_s, key=lambda h: (-h.score, h.symbol)))
    return Decision(level=level_for(score, config.scoring), score=score, hits=scored, brand=ctx.brand.id,
                    code_mail=code_mail, auth=ctx.auth, notes=tuple(errors))
