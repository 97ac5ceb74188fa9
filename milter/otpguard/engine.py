"""The engine: size cap, parse, (optional) sender authentication by DNS, then the pure core.

This is the one entry point the milter and the scanner share.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from .core import pipeline
from .config import Config
from .core.model import INTERNAL_PREFIX, AuthSummary, Decision, Envelope, Hit, Level
from .core.mime import shrink
from .core.parse import complete, parse_message
from .core.qr import qr_links
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
            return self.too_large(len(raw), raw, envelope)
        limits: tuple[str, ...] = ()
        if len(raw) > cfg.max_parse_bytes:
            # Large part bodies are cut, not the message's end: a lure after a big
            # attachment is still read (the prefix alone would not hold it).
            size = len(raw)
            cut = shrink(raw, cfg.max_parse_bytes)
            how = "its front read" if raw.startswith(cut) else "large part bodies cut"
            raw, truncated = cut, True
            limits = (f"message of {size} bytes > max_parse_bytes {cfg.max_parse_bytes}: {how}",)
        elif truncated:
            limits = ("only a prefix of the message was received for analysis",)
        # The facts only brand-claiming mail needs (links written in the text, Unicode evidence)
        # are read by the pipeline when a message claims a brand (parse.complete).
        msg = parse_message(raw, cfg, whole=False)
        if limits:
            msg = replace(msg, limits=limits + msg.limits)
        ctxs = pipeline.contexts(msg, envelope, self.config)
        if msg.pictures and cfg.qr_max_images and pipeline.claims_brand(ctxs):
            # QR decoding costs milliseconds per picture: only mail that claims a brand pays.
            msg = complete(msg, cfg.max_links)  # a QR code's links come after the text's
            for ctx in ctxs:
                ctx.msg = msg  # what the contexts computed so far holds for the completed message
            links, notes = qr_links(msg.pictures, cfg.qr_max_images, cfg.qr_max_pixels)
            if links or notes:
                msg = replace(msg, links=msg.links + tuple(links[: max(0, cfg.max_links - len(msg.links))]),
                              limits=msg.limits + tuple(notes))
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

    def too_large(self, size: int, raw: bytes = b"", envelope: Envelope | None = None) -> Decision:
        """The verdict for a message over analysis.max_message_bytes. With the bytes received
        (all, or the spooled prefix), its header and the parts a client displays are still
        analysed, within max_parse_bytes (large part bodies cut): a lure does not escape by
        carrying a big attachment. Without them: clean, not analysed."""
        cap = self.config.analysis.max_message_bytes
        if raw:
            cut = shrink(raw, min(self.config.analysis.max_parse_bytes, cap))
            decision = self.analyse(cut, envelope or Envelope(), truncated=True)
            reason = f"partly analysed: {size} bytes > max_message_bytes {cap} (header and displayed parts read)"
            hit = Hit(symbol="NOT_ANALYSED", strength=1.0, reason=reason)
            return replace(decision, hits=decision.hits + score_hits([hit], self.config.scoring)[1],
                           notes=decision.notes + (reason,))
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
