"""The engine: size cap, parse, (optional) sender authentication by DNS, then the pure core.

This is the one entry point the milter and the scanner share.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from .core import pipeline
from .config import Config
from .core.model import INTERNAL_PREFIX, AuthSummary, Decision, Envelope, Hit, Level
from .core.parse import parse_message
from .core.verdict import level_for, score_hits


class Engine:
    """Holds a validated config (and its DNS client); analyse() is thread-safe."""

    def __init__(self, config: Config, *, verify: bool | None = None, dns: Any = None,
                 on_dns_query: Callable[[float, str], None] | None = None) -> None:
        self.config = config
        self.verify = config.auth.verify if verify is None else verify
        self.dns = dns
        if self.verify and self.dns is None:
            from .auth.dnsio import DnsClient

            self.dns = DnsClient.from_config(config.auth, on_query=on_dns_query)
        # The protected brands' domains exist: a resolver that says otherwise is broken, and
        # what it says about them is a temporary error (auth/verify.py, _Visibility).
        self.known_domains = frozenset(d for b in config.brands for d in b.domains)

    def analyse(self, raw: bytes, envelope: Envelope, *, truncated: bool = False) -> Decision:
        """Analyse one message's raw bytes (truncated: only a prefix of a larger message)."""
        cfg = self.config.analysis
        if len(raw) > cfg.max_message_bytes:
            return self.too_large(len(raw))
        if len(raw) > cfg.max_parse_bytes:
            raw, truncated = raw[: cfg.max_parse_bytes], True
        msg = parse_message(raw, cfg)
        ctxs = pipeline.contexts(msg, envelope, self.config)
        upstream = self._upstream(msg)
        if upstream is not None and upstream.forged:
            for ctx in ctxs:
                ctx.forged_results = upstream.forged
        # DKIM body hashes cannot verify on a prefix: authenticate whole messages only.
        auth = self._authenticate(raw, msg, envelope, ctxs, upstream) if not truncated else None
        decision = pipeline.decide(ctxs, self.config, auth)
        # Failures the parser caught and went on from: the verdict stands without that part.
        failed = tuple(d if d.startswith(INTERNAL_PREFIX) else INTERNAL_PREFIX + d
                       for d in msg.defects if d.startswith((INTERNAL_PREFIX, "walk: ", "part: ")))
        if failed:
            decision = replace(decision, notes=decision.notes + failed)
        decision = self._apply_policy(decision, msg, envelope)
        if truncated:
            decision = replace(decision, notes=decision.notes + (f"analysed the first {len(raw)} bytes",))
        return decision

    def _upstream(self, msg) -> Any:
        """Trusted upstream results above the trust boundary, and the forged ones below it."""
        a = self.config.auth
        if not a.trusted_authserv_ids:
            return None
        from .auth.authresults import upstream_results

        fields = [(k, v) for k, v in msg.raw_headers if k in ("received", "authentication-results")]
        from_domain = msg.from_[0].domain if msg.from_ else None
        return upstream_results(fields, a.trusted_authserv_ids, from_domain, trusted_hops=a.trusted_hops)

    def _apply_policy(self, decision: Decision, msg, envelope: Envelope) -> Decision:
        """The allow/deny lists and the recipient domain's thresholds ([policy])."""
        from .core.policy import match

        policy = self.config.policy
        scoring = self.config.scoring_for(envelope.rcpt_to)
        hits: list[Hit] = []
        matched: tuple[str, ...] = ()
        if policy.lists.allow or policy.lists.deny:
            from_domain = msg.from_[0].domain if msg.from_ else None
            hits, matched = match(policy.lists, auth=decision.auth, envelope=envelope, from_domain=from_domain)
        if not hits and scoring is self.config.scoring:
            return decision
        extra, scored = score_hits(hits, scoring)
        score = round(decision.score + extra, 2)
        # An explicit deny overrides a genuine result: the admin said so.
        genuine = decision.genuine and not any(m.startswith("deny:") for m in matched)
        level = level_for(score, scoring) if (decision.analysed and not genuine) else decision.level
        notes = decision.notes
        if scoring is not self.config.scoring:
            domain = self.config.policy.for_recipients(envelope.rcpt_to)
            notes = notes + (f"policy: thresholds of recipient domain {domain[0] if domain else '?'}",)
        return replace(decision, score=score, level=level, genuine=genuine, policy=matched, notes=notes,
                       hits=tuple(sorted(decision.hits + scored, key=lambda h: (-h.score, h.symbol))))

    def too_large(self, size: int) -> Decision:
        """The verdict for a message over analysis.max_message_bytes: clean, not analysed."""
        cap = self.config.analysis.max_message_bytes
        hit = Hit(symbol="NOT_ANALYSED", strength=1.0, reason=f"not analysed: {size} bytes > max_message_bytes {cap}")
        score, scored = score_hits([hit], self.config.scoring)
        return Decision(level=Level.CLEAN, score=score, analysed=False, hits=scored, notes=(hit.reason,))

    def _authenticate(self, raw: bytes, msg, envelope: Envelope, ctxs, upstream: Any = None) -> AuthSummary | None:
        a = self.config.auth
        in_scope = a.scope == "all" or self.config.policy.lists.needs_auth or pipeline.claims_brand(ctxs)
        if not in_scope:
            return None
        if upstream is not None and upstream.summary is not None and a.use_upstream_results:
            return upstream.summary
        if not self.verify:
            return None
        from .auth.verify import verify

        return verify(raw, envelope, dns=self.dns, cfg=a, budget_seconds=a.message_budget,
                      known_domains=self.known_domains)

    def own_results_header(self, decision: Decision) -> str | None:
        """Value of our Authentication-Results header, when we checked authentication ourselves."""
        if decision.auth is None or decision.auth.source.startswith("upstream:"):
            return None  # upstream results already stand in their own header
        from .auth.authresults import own_results_header

        return own_results_header(decision.auth, self.config.auth.authserv_id)
