"""Genuine-code bursts: counting rules, language, and two hosts sharing a real Redis."""
from __future__ import annotations

import logging

import pytest
import redis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from otpguard.ops.bursts import FALLBACK_NOTICE, BurstNotice, BurstTracker
from otpguard.config import BurstConfig, StateConfig
from otpguard.ops.metrics import Metrics
from otpguard.core.model import AuthSummary, Decision, Envelope, Level
from otpguard.ops.state import MemoryStore, RedisStore, ResilientStore, open_store
from support.redisserver import RedisServer, redis_server  # noqa: F401

CFG = BurstConfig(threshold=3, window_seconds=3600, default_language="en",
                  notice={"en": "codes requested: change your password", "ja": "コードが要求されました"},
                  subject_prefix={"en": "[Codes?]", "ja": "[要注意]"})
USER = "alice@example.org"


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def code_mail(from_domain: str = "amazon.com", *, genuine: bool = True, code: bool = True) -> Decision:
    return Decision(level=Level.CLEAN, score=0.0, genuine=genuine, code_mail=code, brand="amazon",
                    auth=AuthSummary(source="local", dmarc="pass" if genuine else "fail",
                                     from_domain=from_domain))


def env(*rcpt: str) -> Envelope:
    return Envelope(mail_from="bounce@amazon.com", rcpt_to=rcpt or (USER,))


def test_third_genuine_code_mail_in_window_gets_a_notice() -> None:
    clock = Clock()
    t = BurstTracker(MemoryStore(), CFG, clock)
    assert t.observe(code_mail(), env()) is None
    clock.t += 60
    assert t.observe(code_mail(), env()) is None
    clock.t += 60
    notice = t.observe(code_mail(), env())
    assert notice == BurstNotice(recipient_count=3, notice="codes requested: change your password",
                                 subject_prefix="[Codes?]", language="en", new_burst=True)
    clock.t += 60
    fourth = t.observe(code_mail(), env())
    assert fourth is not None and fourth.recipient_count == 4 and not fourth.new_burst
    with pytest.raises(AttributeError):
        notice.notice = "x"  # type: ignore[misc]  # frozen


def test_only_genuine_code_mails_count() -> None:
    t = BurstTracker(MemoryStore(), CFG, Clock())
    for _ in range(5):
        assert t.observe(code_mail(genuine=False), env()) is None  # phish does not count
        assert t.observe(code_mail(code=False), env()) is None  # genuine newsletter does not count
        assert t.observe(Decision(level=Level.PHISH, score=20), env()) is None
    assert t.observe(code_mail(), env()) is None  # first genuine code mail: count 1


def test_window_slides_and_recipients_are_separate() -> None:
    clock = Clock()
    t = BurstTracker(MemoryStore(), CFG, clock)
    t.observe(code_mail(), env())
    t.observe(code_mail(), env())
    clock.t += 3601  # both left the window
    assert t.observe(code_mail(), env()) is None
    assert t.observe(code_mail(), env("bob@example.org")) is None
    # Case and angle brackets do not split one recipient into several.
    notice = t.observe(code_mail(), env("<ALICE@Example.org>"))
    assert notice is None  # alice: 2 in window
    notice = t.observe(code_mail(), env("bob@example.org", USER, USER))
    assert notice is not None and notice.recipient_count == 3  # alice reached 3, bob has 2


def test_disabled_counts_nothing() -> None:
    store = MemoryStore()
    t = BurstTracker(store, BurstConfig(enabled=False, threshold=1), Clock())
    assert t.observe(code_mail(), env()) is None
    assert len(store) == 0


def test_language_from_jp_domain_and_fallbacks() -> None:
    t = BurstTracker(MemoryStore(), BurstConfig(threshold=1, notice=CFG.notice,
                                                subject_prefix=CFG.subject_prefix), Clock())
    n = t.observe(code_mail("amazon.co.jp"), env())
    assert n is not None and n.language == "ja" and n.notice == "コードが要求されました" and n.subject_prefix == "[要注意]"
    n = t.observe(code_mail("amazon.com"), env())
    assert n is not None and n.language == "en"
    # No ja text configured: .jp mail gets the default language.
    t = BurstTracker(MemoryStore(), BurstConfig(threshold=1, notice={"en": "E"}), Clock())
    n = t.observe(code_mail("amazon.co.jp"), env())
    assert n is not None and (n.language, n.notice, n.subject_prefix) == ("en", "E", "")
    # Nothing configured at all: a built-in English notice, no subject prefix.
    t = BurstTracker(MemoryStore(), BurstConfig(threshold=1, default_language="de"), Clock())
    n = t.observe(code_mail(), env())
    assert n is not None and (n.notice, n.subject_prefix, n.language) == (FALLBACK_NOTICE, "", "en")
    # Japanese by default.
    t = BurstTracker(MemoryStore(), BurstConfig(threshold=1, default_language="ja", notice=CFG.notice), Clock())
    n = t.observe(code_mail("amazon.com"), env())
    assert n is not None and n.language == "ja"


# --- Redis: the fleet case ----------------------------------------------------------------

@pytest.mark.integration
def test_two_instances_sharing_one_redis_count_together(redis_server: RedisServer) -> None:  # noqa: F811
    # Two MX hosts: each has its own store, client and tracker; only Redis is shared.
    cfg = StateConfig(backend="redis", redis_url=redis_server.url, hash_salt="site-salt")
    clock = Clock()
    host_a = BurstTracker(open_store(cfg), CFG, clock)
    host_b = BurstTracker(open_store(cfg), CFG, clock)
    assert host_a.observe(code_mail(), env()) is None
    clock.t += 10
    assert host_b.observe(code_mail(), env()) is None
    clock.t += 10
    notice = host_a.observe(code_mail(), env())
    assert notice is not None and notice.recipient_count == 3 and notice.new_burst
    clock.t += 10
    notice = host_b.observe(code_mail(), env())
    assert notice is not None and notice.recipient_count == 4 and not notice.new_burst

    raw = redis.Redis.from_url(redis_server.url)
    keys = list(raw.scan_iter())
    assert len(keys) == 1
    assert b"alice" not in keys[0] and b"example" not in keys[0] and b"@" not in keys[0]
    assert 0 < raw.ttl(keys[0]) <= CFG.window_seconds


def _errors(m: Metrics, stage: str) -> float:
    for fam in text_string_to_metric_families(generate_latest(m.registry).decode()):
        for s in fam.samples:
            if s.name == "otpguard_errors_total" and s.labels == {"stage": stage}:
                return s.value
    raise AssertionError("no such sample")


@pytest.mark.integration
def test_redis_stopped_mid_run(redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    caplog.set_level(logging.WARNING, logger="otpguard.ops.state")
    metrics = Metrics(process_metrics=False)
    mono = Clock(0.0)
    clock = Clock()
    store = ResilientStore(RedisStore(redis_server.url), on_error=lambda: metrics.record_error("state"),
                           log_interval=60, retry_after=0.0, monotonic=mono)
    tracker = BurstTracker(store, CFG, clock)
    assert tracker.observe(code_mail(), env()) is None
    assert tracker.observe(code_mail(), env()) is None

    redis_server.stop()
    # Mail keeps flowing: no notice, no exception, each lost count is an error.
    for i in range(5):
        mono.t = float(i)
        assert tracker.observe(code_mail(), env()) is None
    assert _errors(metrics, "state") == 5
    warnings = [r for r in caplog.records if "state store unavailable" in r.getMessage()]
    assert len(warnings) == 1  # once per interval, not once per message
    mono.t = 61.0
    assert tracker.observe(code_mail(), env()) is None
    warnings = [r for r in caplog.records if "state store unavailable" in r.getMessage()]
    assert len(warnings) == 2
    assert _errors(metrics, "state") == 6

    # Redis back (empty: no persistence): counting resumes from zero.
    redis_server.restart()
    mono.t = 62.0
    assert tracker.observe(code_mail(), env()) is None
    assert store.available
    assert tracker.observe(code_mail(), env()) is None
    assert tracker.observe(code_mail(), env()) is not None
    assert _errors(metrics, "state") == 6
