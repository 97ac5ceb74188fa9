"""The running milter's shared state: the runtime in use (swapped whole on SIGHUP), messages in flight."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol

from ..config import Config
from ..core.model import Decision, Envelope


class EngineLike(Protocol):
    """What the milter needs from the analysis engine."""

    def analyse(self, raw: bytes, envelope: Envelope, *, truncated: bool = False) -> Decision: ...

    def too_large(self, size: int, raw: bytes = b"", envelope: Envelope | None = None) -> Decision: ...

    def own_results_header(self, decision: Decision) -> str | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """Config, engine and observers in use; replaced as a whole on reload (SIGHUP)."""

    config: Config
    engine: EngineLike
    metrics: Any = None      # otpguard.ops.metrics.Metrics or None
    bursts: Any = None       # otpguard.ops.bursts.BurstTracker or None
    pool: Any = None         # otpguard.mta.pool.WorkerPool (milter.workers > 1) or None: analyse here


_runtime: Runtime | None = None
_in_flight = 0
_in_flight_lock = threading.Lock()


def set_runtime(runtime: Runtime | None) -> None:
    """Install the runtime used by messages that start from now on (atomic swap)."""
    global _runtime
    _runtime = runtime


def get_runtime() -> Runtime:
    """The runtime in use."""
    if _runtime is None:
        raise RuntimeError("otpguard milter used before set_runtime()")
    return _runtime


class RuntimeReplaced(Exception):
    """The runtime a message started its end of message with was replaced (SIGHUP) and its
    analysis workers stopped before the message's analysis began: start over, whole, with the
    runtime in use now, so no message mixes two configurations (mta/pool.py)."""


def in_flight() -> int:
    """Messages between MAIL FROM and end of message (or abort) right now."""
    return _in_flight


def reset_in_flight() -> None:
    """Forget every message in flight (a test starting from scratch)."""
    global _in_flight
    with _in_flight_lock:
        _in_flight = 0


def count_in_flight(delta: int) -> None:
    """One more (+1) or one fewer (-1) message in flight."""
    global _in_flight
    with _in_flight_lock:
        _in_flight += delta
