"""Sliding-window event counters shared by the checks that need memory across messages.

Two backends: in-process memory (one host) and Redis (a fleet of MX hosts). Keys are
"namespace:subject"; the subject (a recipient address) never reaches storage in clear: it is
replaced by an HMAC-SHA256 keyed with the site's hash_salt. A Redis that is down or slow must
never hold a message: short socket timeouts, no retries, and `ResilientStore` turns failures
into "nothing counted" after reporting them.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..config import StateConfig

if TYPE_CHECKING:  # pragma: no cover
    import redis

log = logging.getLogger(__name__)

# A dead Redis costs a message at most about this long (connect, then each read).
REDIS_TIMEOUT_SECONDS = 0.2
# After a failure, the store is not tried again for this long: every message in between would
# otherwise pay the timeout too.
RETRY_AFTER_SECONDS = 1.0

_NAMESPACE = re.compile(r"[a-z][a-z0-9_]{0,31}")


class StateUnavailable(Exception):
    """The state backend cannot be reached or answered with an error."""


class CounterStore(Protocol):
    """Counts events per key in a sliding time window."""

    def hit(self, key: str, now: float, window: float) -> int:
        """Add one event at `now`, forget events at or before now - window, return the count left."""
        ...


def hashed_key(key: str, salt: str) -> str:
    """Replace the subject of "namespace:subject" by its salted HMAC-SHA256 (hex)."""
    namespace, sep, subject = key.partition(":")
    if not sep or not _NAMESPACE.fullmatch(namespace):
        namespace, subject = "", key
    digest = hmac.new(salt.encode(), subject.strip().lower().encode(), hashlib.sha256).hexdigest()
    return f"{namespace}:{digest}" if namespace else digest


class MemoryStore:
    """In-process sliding windows (the default: one host, lost on restart)."""

    # Idle keys are swept at most this often, so memory follows active recipients only.
    SWEEP_EVERY = 1000

    def __init__(self, *, hash_salt: str = "") -> None:
        self._salt = hash_salt
        self._events: dict[str, deque[float]] = {}
        self._windows: dict[str, float] = {}
        self._lock = threading.Lock()
        self._calls = 0

    def hit(self, key: str, now: float, window: float) -> int:
        """Add one event and return the number within the window."""
        k = hashed_key(key, self._salt)
        with self._lock:
            events = self._events.setdefault(k, deque())
            self._windows[k] = window
            events.append(now)
            _expire(events, now - window)
            self._calls += 1
            if self._calls % self.SWEEP_EVERY == 0:
                self._sweep(now)
            return len(events)

    def _sweep(self, now: float) -> None:
        for k in [k for k, ev in self._events.items() if not ev or ev[-1] <= now - self._windows[k]]:
            del self._events[k]
            del self._windows[k]

    def __len__(self) -> int:
        return len(self._events)


def _expire(events: deque[float], cutoff: float) -> None:
    # Events arrive nearly in time order; drop from the left, then fix any straggler.
    while events and events[0] <= cutoff:
        events.popleft()
    if any(t <= cutoff for t in events):
        kept = [t for t in events if t > cutoff]
        events.clear()
        events.extend(kept)


class RedisStore:
    """Sliding windows in Redis sorted sets (score = event time), shared by all hosts."""

    def __init__(self, url: str, *, key_prefix: str = "otpguard:", hash_salt: str = "",
                 timeout: float = REDIS_TIMEOUT_SECONDS, client: redis.Redis | None = None) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.key_prefix = key_prefix
        self._salt = hash_salt
        # redis-py retries 10 times with backoff by default: seconds per message on a dead
        # server. One attempt, short timeouts; ResilientStore decides what happens next.
        self.client = client if client is not None else redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0), health_check_interval=0)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)

    def key(self, key: str) -> str:
        """The Redis key for a caller's key (prefix + namespace + hashed subject)."""
        return self.key_prefix + hashed_key(key, self._salt)

    def hit(self, key: str, now: float, window: float) -> int:
        """Add one event and return the number within the window; raises StateUnavailable."""
        k = self.key(key)
        # Unique member per event: two hosts can record the same instant.
        member = f"{now:.6f}:{secrets.token_hex(6)}"
        try:
            # MULTI/EXEC: the trim, add, count and TTL are applied atomically, so concurrent
            # hosts see consistent counts (exactly one of them sees count == threshold).
            pipe = self.client.pipeline(transaction=True)
            pipe.zremrangebyscore(k, "-inf", now - window)
            pipe.zadd(k, {member: now})
            pipe.zcard(k)
            # The key lives as long as its newest event matters, then Redis drops it.
            pipe.expire(k, max(1, math.ceil(window)))
            results = pipe.execute()
        except self._errors as exc:
            raise StateUnavailable(f"redis: {exc.__class__.__name__}: {exc}") from exc
        return int(results[2])

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


class ResilientStore:
    """Wraps a store so its failures cost nothing: count 0, report, log once per interval."""

    def __init__(self, inner: CounterStore, *, on_error: Callable[[], None] = lambda: None,
                 log_interval: float = 60.0, retry_after: float = RETRY_AFTER_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic,
                 logger: logging.Logger = log) -> None:
        self.inner = inner
        self._on_error = on_error
        self._log_interval = log_interval
        self._retry_after = retry_after
        self._monotonic = monotonic
        self._log = logger
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._next_try = -math.inf
        self._next_log = -math.inf
        self._suppressed = 0

    @property
    def available(self) -> bool:
        """False while the backend is considered down."""
        return self._down_since is None

    def hit(self, key: str, now: float, window: float) -> int:
        """Like the inner store, but 0 (nothing counted) when it fails or is resting after a failure."""
        t = self._monotonic()
        with self._lock:
            skip = self._down_since is not None and t < self._next_try
        if skip:
            self._failed(t, None)
            return 0
        try:
            count = self.inner.hit(key, now, window)
        except StateUnavailable as exc:
            self._failed(t, exc)
            return 0
        with self._lock:
            was_down, self._down_since = self._down_since, None
            suppressed, self._suppressed = self._suppressed, 0
            self._next_log = -math.inf
        if was_down is not None:
            self._log.warning("state store available again after %.0f s (%d operations not counted)",
                              t - was_down, suppressed)
        return count

    def _failed(self, t: float, exc: StateUnavailable | None) -> None:
        try:
            self._on_error()
        except Exception:  # the error counter must never turn an outage into a failed message
            self._log.debug("state error callback failed", exc_info=True)
        with self._lock:
            if self._down_since is None:
                self._down_since = t
            if exc is not None:
                self._next_try = t + self._retry_after
            self._suppressed += 1
            if t < self._next_log:
                return
            self._next_log = t + self._log_interval
            n, self._suppressed = self._suppressed, 0
        reason = str(exc) if exc is not None else "still down"
        self._log.warning("state store unavailable, burst counting paused: %s "
                          "(%d operations not counted; next report in %.0f s)",
                          reason, n, self._log_interval)


def open_store(cfg: StateConfig, *, on_error: Callable[[], None] = lambda: None) -> CounterStore:
    """The store the config asks for; Redis is wrapped so that an outage never blocks mail."""
    if cfg.backend == "redis":
        return ResilientStore(RedisStore(cfg.redis_url, key_prefix=cfg.key_prefix, hash_salt=cfg.hash_salt),
                              on_error=on_error, log_interval=float(cfg.error_log_interval_seconds))
    return MemoryStore(hash_salt=cfg.hash_salt)
