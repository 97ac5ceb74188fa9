"""The engine: size cap, parse, (optional) sender authentication by DNS, then the pure core.

This is the one entry point the milter and the scanner share.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from .core import pipeline
from .config import Config
from .core.model import AuthSummary, Decision, Envelope, Hit, Level
from .core.parse import parse_message
from .core.verdict import score_hits


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

    def analyse(self, raw: bytes, envelope: Envelope, *, truncated: bool = False) -> Decision:
        """Analyse one message's raw bytes (truncated: only a prefix of a larger message)."""
        cfg = self.config.analysis
        if len(raw) > cfg.max_message_bytes:
            return self.too_large(len(raw))
        if len(raw) > cfg.max_parse_bytes:
            raw, truncated = raw[: cfg.max_parse_bytes], True
        msg = parse_message(raw, cfg)
        ctxs = pipeline.contexts(msg, envelope, self.config)
        # DKIM body hashes cannot verify on a prefix: authenticate whole messages only.
        auth = self._authenticate(raw, msg, envelope, ctxs) if not truncated else None
        decision = pipeline.decide(ctxs, self.config, auth)
        if truncated:
            decision = replace(decision, notes=decision.notes + (f"analysed the first {len(raw)} bytes",))
        return decision

    def too_large(self, size: int) -> Decision:
        """The verdict for a message over analysis.max_message_bytes: clean, not analysed."""
        cap = self.config.analysis.max_message_bytes
        hit = Hit(symbol="NOT_ANALYSED", strength=1.0, reason=f"not analysed: {size} bytes > max_message_bytes {cap}")
        score, scored = score_hits([hit], self.config.scoring)
        return Decision(level=Level.CLEAN, score=score, analysed=False, hits=scored, notes=(hit.reason,))

    def _authenticate(self, raw: bytes, msg, envelope: Envelope, ctxs) -> AuthSummary | None:
        a = self.config.auth
        in_scope = a.scope == "all" or pipeline.claims_brand(ctxs)
        if not in_scope:
            return None
        if a.trusted_authserv_ids and a.use_upstream_results:
            from .auth.authresults import summary_from_headers

            from_domain = msg.from_[0].domain if msg.from_ else None
            fields = [("authentication-results", v) for v in msg.header_all("authentication-results")]
            upstream = summary_from_headers(fields, a.trusted_authserv_ids, from_domain)
            if upstream is not None:
                return upstream
        if not self.verify:
            return None
        from .auth.verify import verify

        return verify(raw, envelope, dns=self.dns, cfg=a, budget_seconds=a.message_budget)

    def own_results_header(self, decision: Decision) -> str | None:
        """Value of our Authentication-Results header, when we checked authentication ourselves."""
        if decision.auth is None or decision.auth.source.startswith("upstream:"):
            return None  # upstream results already stand in their own header
        from .auth.authresults import own_results_header

        return own_results_header(decision.auth, self.config.auth.authserv_id)
