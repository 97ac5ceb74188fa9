"""Sliding-window stores: memory semantics, a real Redis on loopback, and Redis outages."""
from __future__ import annotations

import logging
import socket
import threading
import time

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from otpguard.config import StateConfig
from otpguard.ops.state import (MemoryStore, RedisStore, ResilientStore, StateUnavailable, hashed_key,
                            open_store)
from support.redisserver import RedisServer, free_port, redis_server  # noqa: F401

ADDR = "Alice.Example+tag@Example.ORG"


def test_memory_window_counts_and_forgets() -> None:
    s = MemoryStore()
    assert s.hit("burst:a@x", 100.0, 60) == 1
    assert s.hit("burst:a@x", 130.0, 60) == 2
    assert s.hit("burst:b@x", 130.0, 60) == 1  # per key
    assert s.hit("burst:a@x", 160.0, 60) == 2  # the event at 100 is at the edge: gone
    assert s.hit("burst:a@x", 300.0, 60) == 1


def test_memory_keys_are_case_insensitive_and_idle_keys_swept() -> None:
    s = MemoryStore()
    s.hit("burst:A@X", 0.0, 10)
    assert s.hit("burst:a@x", 1.0, 10) == 2
    s.SWEEP_EVERY = 5
    for i in range(10):
        s.hit(f"burst:{i}@x", 100.0 + i, 10)
    assert len(s) <= 10  # the idle a@x key was swept


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), min_size=1, max_size=60),
       st.floats(min_value=0.5, max_value=300))
def test_memory_matches_a_brute_force_count(times: list[float], window: float) -> None:
    s = MemoryStore()
    seen: list[float] = []
    for t in times:  # any order: clocks of cooperating threads are not strictly monotone
        seen.append(t)
        expected = sum(1 for x in seen if t - window < x <= t) if t == max(seen) else None
        got = s.hit("k:v", t, window)
        if expected is not None:
            assert got == expected


def test_hashed_key_keeps_namespace_hides_subject() -> None:
    k = hashed_key(f"burst:{ADDR}", "salt")
    ns, digest = k.split(":")
    assert ns == "burst" and len(digest) == 64
    assert hashed_key(f"burst:{ADDR.lower()}", "salt") == k
    assert hashed_key(f"burst:{ADDR}", "other salt") != k
    assert "example" not in hashed_key("Not A Namespace:" + ADDR, "s").lower()


# --- Redis ---------------------------------------------------------------------------------

@pytest.mark.integration
def test_redis_counts_with_ttl_and_hashed_keys(redis_server: RedisServer) -> None:  # noqa: F811
    store = RedisStore(redis_server.url, key_prefix="otpguard:", hash_salt="pepper")
    assert store.hit(f"burst:{ADDR}", 1000.0, 3600) == 1
    assert store.hit(f"burst:{ADDR}", 1001.0, 3600) == 2
    assert store.hit(f"burst:{ADDR}", 4600.5, 3600) == 2  # the event at 1000 left the window
    assert store.hit("burst:bob@example.org", 1001.0, 600) == 1

    raw = redis.Redis.from_url(redis_server.url)
    keys = [k.decode() for k in raw.scan_iter(count=1000)]
    assert len(keys) == 2
    for key in keys:
        assert key.startswith("otpguard:burst:")
        low = key.lower()
        # No address or part of one in clear.
        for fragment in ("alice", "bob", "example", "@", "org"):
            assert fragment not in low
        for member in raw.zrange(key, 0, -1):
            assert b"alice" not in member.lower() and b"@" not in member
    ttl = {k: raw.ttl(k) for k in keys}
    assert ttl[store.key(f"burst:{ADDR}")] in range(3590, 3601)
    assert ttl[store.key("burst:bob@example.org")] in range(590, 601)
    store.close()


@pytest.mark.integration
def test_redis_window_shared_by_two_clients(redis_server: RedisServer) -> None:  # noqa: F811
    a = RedisStore(redis_server.url, hash_salt="s")
    b = RedisStore(redis_server.url, hash_salt="s")
    counts = []
    barrier = threading.Barrier(8)

    def worker(store: RedisStore, t: float) -> None:
        barrier.wait()
        counts.append(store.hit("burst:x@y", t, 100))

    threads = [threading.Thread(target=worker, args=(a if i % 2 else b, 50.0 + i)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    # MULTI/EXEC: every count is distinct, so exactly one caller sees each value.
    assert sorted(counts) == list(range(1, 9))


@pytest.mark.integration
def test_redis_down_raises_state_unavailable_quickly(redis_server: RedisServer) -> None:  # noqa: F811
    store = RedisStore(redis_server.url)
    assert store.hit("burst:a@b", 1.0, 10) == 1
    redis_server.stop()
    start = time.monotonic()
    with pytest.raises(StateUnavailable):
        store.hit("burst:a@b", 2.0, 10)
    assert time.monotonic() - start < 1.0
    redis_server.restart()
    # The pool notices the dead connection and reconnects; nothing was persisted.
    assert store.hit("burst:a@b", 3.0, 10) == 1


def test_redis_that_never_answers_does_not_stall() -> None:
    # A listener that accepts TCP but never speaks: the worst case, a hung Redis.
    with socket.socket() as sink:
        sink.bind(("127.0.0.1", 0))
        sink.listen(16)
        port = sink.getsockname()[1]
        store = RedisStore(f"redis://127.0.0.1:{port}/0", timeout=0.2)
        start = time.monotonic()
        with pytest.raises(StateUnavailable):
            store.hit("burst:a@b", 1.0, 10)
        assert time.monotonic() - start < 1.0


def test_redis_nothing_listening() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StateUnavailable):
        store.hit("burst:a@b", 1.0, 10)


# --- ResilientStore ------------------------------------------------------------------------

class Flaky:
    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    def hit(self, key: str, now: float, window: float) -> int:
        self.calls += 1
        if self.down:
            raise StateUnavailable("redis: ConnectionError: refused")
        return 5


def test_resilient_store_counts_errors_logs_once_per_interval_and_recovers(caplog) -> None:
    t = [0.0]
    errors = []
    inner = Flaky()
    store = ResilientStore(inner, on_error=lambda: errors.append(1), log_interval=60,
                           retry_after=1.0, monotonic=lambda: t[0])
    caplog.set_level(logging.WARNING, logger="otpguard.ops.state")
    assert store.hit("k:v", 0, 10) == 5
    inner.down = True
    for i in range(10):  # ten messages within 5 s
        t[0] = i * 0.5
        assert store.hit("k:v", t[0], 10) == 0
    assert len(errors) == 10
    assert not store.available
    # While resting after a failure the backend is not even tried (no timeout per message).
    assert inner.calls < 11
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1 and "refused" in warnings[0].getMessage()
    t[0] = 61.0
    assert store.hit("k:v", t[0], 10) == 0
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 2 and "10 operations not counted" in warnings[1].getMessage()
    inner.down = False
    t[0] = 70.0
    assert store.hit("k:v", t[0], 10) == 5
    assert store.available
    assert any("available again" in r.getMessage() for r in caplog.records)


def test_resilient_store_survives_a_failing_error_callback() -> None:
    inner = Flaky()
    inner.down = True

    def boom() -> None:
        raise RuntimeError("metrics broken")

    assert ResilientStore(inner, on_error=boom).hit("k:v", 0, 10) == 0


@pytest.mark.integration
def test_open_store_follows_config(redis_server: RedisServer) -> None:  # noqa: F811
    assert isinstance(open_store(StateConfig()), MemoryStore)
    store = open_store(StateConfig(backend="redis", redis_url=redis_server.url, key_prefix="site1:",
                                   hash_salt="s"))
    assert isinstance(store, ResilientStore) and isinstance(store.inner, RedisStore)
    assert store.hit("burst:a@b", 1.0, 10) == 1
    keys = list(redis.Redis.from_url(redis_server.url).scan_iter())
    assert len(keys) == 1 and keys[0].startswith(b"site1:burst:")
