"""Data that crosses a seam: envelope in, evidence and decision out. All frozen."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

# How the core names a failure it caught (Decision.internal_failures).
INTERNAL_PREFIX = "internal: "
_CHECK_FAILED = re.compile(r"check \S+ failed: ")


class Level(StrEnum):
    CLEAN = "clean"
    SUSPICIOUS = "suspicious"
    PHISH = "phish"


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """What the MTA told us about the message, outside its bytes."""

    client_ip: str | None = None
    client_name: str | None = None
    helo: str | None = None
    mail_from: str | None = None
    rcpt_to: tuple[str, ...] = ()
    queue_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Hit:
    """One piece of evidence from a check: a symbol, how strongly it applies, and why."""

    symbol: str
    strength: float
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoredHit:
    """A hit with its score: score = weight x strength x factor (rounded), all three kept so
    `otpguard explain` can show the arithmetic without redoing the scoring."""

    symbol: str
    score: float
    reason: str
    weight: float = 0.0  # [scoring.weights] of the symbol
    strength: float = 1.0  # how strongly the check says it applies, 0..1
    factor: float = 1.0  # the pipeline's discount (a claim made only in passing counts less)


@dataclass(frozen=True, slots=True, kw_only=True)
class DkimResult:
    domain: str
    selector: str
    result: str  # pass | fail | neutral | policy | permerror | temperror | none


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSummary:
    """Sender authentication results, from our own checks or a trusted upstream host.

    Results use RFC 8601 words. `dmarc_aligned` names the identifier (SPF or DKIM domain)
    that produced an aligned pass, if any.
    """

    source: str  # "local" or "upstream:<authserv-id>" or "arc:<sealer>"
    spf: str = "none"
    spf_domain: str | None = None
    dkim: tuple[DkimResult, ...] = ()
    arc: str = "none"
    dmarc: str = "none"
    dmarc_policy: str | None = None
    from_domain: str | None = None
    dmarc_aligned: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The verdict on one message, with everything the action layer and metrics need."""

    level: Level
    score: float
    genuine: bool = False
    analysed: bool = True
    hits: tuple[ScoredHit, ...] = ()
    brand: str | None = None
    code_mail: bool = False  # a security-code / sign-in / reset mail (genuine or not)
    auth: AuthSummary | None = None
    error: str | None = None
    notes: tuple[str, ...] = field(default=())
    # Allow/deny list entries that matched, as "allow:dkim", "deny:ip"... (core/policy.py).
    policy: tuple[str, ...] = ()

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(h.symbol for h in self.hits)

    @property
    def internal_failures(self) -> tuple[str, ...]:
        """Notes of failures the core caught and went on from (a check that raised, a part the
        parser gave up on): the verdict stands, but it was reached without that evidence. The
        log line and the error metric say so; a swallowed failure is never a silent clean."""
        return tuple(n for n in self.notes if n.startswith(INTERNAL_PREFIX) or _CHECK_FAILED.match(n))
