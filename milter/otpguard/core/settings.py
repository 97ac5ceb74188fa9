"""The core's settings: analysis limits, scoring, the alias map (read from config by the top layer)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .brand import BrandProfile


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalysisConfig:
    max_message_bytes: int = 20 * 1024 * 1024
    max_parse_bytes: int = 4 * 1024 * 1024
    max_part_bytes: int = 4 * 1024 * 1024
    max_parts: int = 200
    max_depth: int = 20
    max_links: int = 2000
    max_text_chars: int = 400_000
    pdf_max_pages: int = 5
    pdf_max_bytes: int = 4 * 1024 * 1024
    time_budget_seconds: float = 10.0
    # QR codes: decoded only in mail that claims a brand, in at most this many pictures of at
    # most this many pixels each (0 images = off).
    qr_max_images: int = 4
    qr_max_pixels: int = 4_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoringConfig:
    suspicious: float = 5.0
    phish: float = 10.0
    weights: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class AliasConfig:
    map: dict[str, str] = field(default_factory=dict)


class CoreSettings(Protocol):
    """What the pipeline reads of the whole configuration (otpguard.config.Config has it)."""

    @property
    def brands(self) -> tuple[BrandProfile, ...]: ...

    @property
    def analysis(self) -> AnalysisConfig: ...

    @property
    def scoring(self) -> ScoringConfig: ...

    @property
    def aliases(self) -> AliasConfig: ...
