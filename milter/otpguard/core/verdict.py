"""Scoring: the weighted sum of hits, and the level it reaches."""
from __future__ import annotations

from typing import Iterable

from .settings import ScoringConfig
from .model import Hit, Level, ScoredHit


def score_hits(hits: Iterable[Hit], scoring: ScoringConfig, factor: float = 1.0) -> tuple[float, tuple[ScoredHit, ...]]:
    """Weight each hit by its symbol's configured weight; strongest evidence first."""
    scored = []
    for hit in hits:
        weight = scoring.weights.get(hit.symbol, 0.0)
        scored.append(ScoredHit(symbol=hit.symbol, score=round(weight * hit.strength * factor, 2), reason=hit.reason,
                                weight=weight, strength=hit.strength, factor=factor))
    scored.sort(key=lambda h: (-h.score, h.symbol))
    return round(sum(h.score for h in scored), 2), tuple(scored)


def level_for(score: float, scoring: ScoringConfig) -> Level:
    if score >= scoring.phish:
        return Level.PHISH
    if score >= scoring.suspicious:
        return Level.SUSPICIOUS
    return Level.CLEAN
