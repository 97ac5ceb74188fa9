"""Genuine security-code bursts: several real sign-in/code/reset mails to one recipient in a
short time mean someone else is trying to sign in with that address, and likely knows the
password. Pure but for the counter store, which is passed in.

Language of the notice: `bursts.default_language`, except that mail from a brand domain under
.jp (e.g. amazon.co.jp, by the authenticated From domain) gets "ja" when a "ja" notice is
configured. A recipient's language is not otherwise known to a milter.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config import BurstConfig
from ..core.model import Decision, Envelope
from .state import CounterStore

NAMESPACE = "burst"

# Used only when the config has no notice text at all for the chosen or default language.
FALLBACK_NOTICE = ("Several security codes were requested for this address. If it was not you, "
                   "someone may know your password: change it now.")


@dataclass(frozen=True, slots=True, kw_only=True)
class BurstNotice:
    """Mark for a message that is part of a burst: a notice header and an optional subject prefix."""

    recipient_count: int  # code mails to the (most affected) recipient within the window, this one included
    notice: str
    subject_prefix: str  # "" when none is configured: add no prefix
    language: str  # the language of `notice`
    new_burst: bool  # this message is the one that reached the threshold


def normalise_address(address: str) -> str:
    """Envelope address as a counting key: no angle brackets, lower case."""
    return address.strip().strip("<>").strip().lower()


def language_for(decision: Decision, cfg: BurstConfig) -> str:
    """The notice language: "ja" for .jp brand mail when configured, else the default."""
    from_domain = (decision.auth.from_domain if decision.auth else None) or ""
    if from_domain.lower().rstrip(".").endswith(".jp") and "ja" in cfg.notice:
        return "ja"
    return cfg.default_language


def _text(texts: dict[str, str], language: str, cfg: BurstConfig, fallback: str) -> tuple[str, str]:
    """The text in `language`, else the default language, else English; with the language found."""
    for lang in (language, cfg.default_language, "en"):
        if lang in texts:
            return lang, texts[lang]
    return "en", fallback


class BurstTracker:
    """Counts genuine code mails per recipient and says when a message belongs to a burst."""

    def __init__(self, store: CounterStore, cfg: BurstConfig,
                 clock: Callable[[], float] = time.time) -> None:
        # Wall-clock time, not monotonic: hosts sharing a Redis must agree on what "now" is.
        self.store = store
        self.cfg = cfg
        self.clock = clock

    def observe(self, decision: Decision, envelope: Envelope) -> BurstNotice | None:
        """Count this message if it is a genuine code mail; a notice when a recipient reaches the threshold."""
        cfg = self.cfg
        if not cfg.enabled or not decision.genuine or not decision.code_mail:
            return None
        now = self.clock()
        recipients = dict.fromkeys(a for a in map(normalise_address, envelope.rcpt_to) if a)
        counts = [self.store.hit(f"{NAMESPACE}:{r}", now, float(cfg.window_seconds)) for r in recipients]
        top = max(counts, default=0)
        if top < cfg.threshold:
            return None
        lang, notice = _text(cfg.notice, language_for(decision, cfg), cfg, FALLBACK_NOTICE)
        _, prefix = _text(cfg.subject_prefix, lang, cfg, "")
        return BurstNotice(
            recipient_count=top,
            notice=notice,
            subject_prefix=prefix,
            language=lang,
            new_burst=cfg.threshold in counts,
        )
