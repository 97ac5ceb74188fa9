"""Metrics: values recorded, scraped over HTTP, parsed with prometheus_client's own parser."""
from __future__ import annotations

import errno
import math
import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from otpguard import __version__
from otpguard.ops.bursts import BurstNotice
from otpguard.ops.metrics import Metrics, parse_listen
from otpguard.core.model import AuthSummary, Decision, DkimResult, Level, ScoredHit

SYMBOLS = ("LOOKALIKE_FROM_DOMAIN", "OTP_LURE", "AUTH_GENUINE", "ALIAS_MISMATCH")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} from an exposition text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return resp.read().decode()


def phish() -> Decision:
    return Decision(level=Level.PHISH, score=12.5, brand="amazon", code_mail=True,
                    hits=(ScoredHit(symbol="LOOKALIKE_FROM_DOMAIN", score=6.0, reason="x"),
                          ScoredHit(symbol="OTP_LURE", score=2.5, reason="y"),
                          ScoredHit(symbol="OTP_LURE", score=2.5, reason="again"),
                          ScoredHit(symbol="SOMETHING_NEW", score=1.0, reason="z")),
                    auth=AuthSummary(source="local", spf="softfail", dmarc="fail", arc="none",
                                     dkim=(DkimResult(domain="amaz0n.example", selector="s", result="fail"),)))


def genuine() -> Decision:
    return Decision(level=Level.CLEAN, score=0.0, genuine=True, brand="amazon", code_mail=True,
                    hits=(ScoredHit(symbol="AUTH_GENUINE", score=0.0, reason="dmarc pass"),),
                    auth=AuthSummary(source="local", spf="pass", dmarc="pass", arc="none",
                                     dkim=(DkimResult(domain="x.example", selector="a", result="fail"),
                                           DkimResult(domain="amazon.co.jp", selector="b", result="pass"))))


@pytest.fixture
def server():
    m = Metrics(symbols=SYMBOLS)
    handle = m.start_http("127.0.0.1:0")
    try:
        yield m, handle
    finally:
        handle.stop()


def test_messages_symbols_auth_and_actions_are_counted(server) -> None:
    m, handle = server
    m.record_message(phish(), "quarantine", 0.03)
    m.record_message(phish(), "quarantine", 0.04)
    m.record_message(genuine(), "accept", 0.002)
    m.record_message(Decision(level=Level.SUSPICIOUS, score=6.0), "tag", 0.01,
                     applied=("tag", "subject", "banner"))
    text = scrape(handle.url)

    assert value(text, "otpguard_messages_total", verdict="phish", action="quarantine") == 2
    assert value(text, "otpguard_messages_total", verdict="genuine", action="accept") == 1
    assert value(text, "otpguard_messages_total", verdict="suspicious", action="tag") == 1
    assert value(text, "otpguard_messages_total", verdict="clean", action="accept") == 0
    # A symbol counts once per message however many hits it has; unknown symbols are "other".
    assert value(text, "otpguard_symbols_total", symbol="OTP_LURE") == 2
    assert value(text, "otpguard_symbols_total", symbol="LOOKALIKE_FROM_DOMAIN") == 2
    assert value(text, "otpguard_symbols_total", symbol="other") == 2
    assert value(text, "otpguard_symbols_total", symbol="AUTH_GENUINE") == 1
    assert not any(n == "otpguard_symbols_total" and ("symbol", "SOMETHING_NEW") in ls
                   for n, ls in samples(text))
    # DKIM: one outcome per message, pass when any signature passed.
    assert value(text, "otpguard_auth_total", method="dkim", result="pass") == 1
    assert value(text, "otpguard_auth_total", method="dkim", result="fail") == 2
    assert value(text, "otpguard_auth_total", method="dmarc", result="fail") == 2
    assert value(text, "otpguard_auth_total", method="dmarc", result="pass") == 1
    assert value(text, "otpguard_auth_total", method="spf", result="softfail") == 2
    assert value(text, "otpguard_auth_total", method="arc", result="none") == 3
    assert value(text, "otpguard_actions_total", action="quarantine") == 2
    assert value(text, "otpguard_actions_total", action="tag") == 1
    assert value(text, "otpguard_actions_total", action="subject") == 1
    assert value(text, "otpguard_actions_total", action="banner") == 1
    assert value(text, "otpguard_actions_total", action="reject") == 0
    assert value(text, "otpguard_analysis_seconds_count") == 4
    assert value(text, "otpguard_analysis_seconds_sum") == pytest.approx(0.082)
    assert value(text, "otpguard_analysis_seconds_bucket", le="0.005") == 1
    assert value(text, "otpguard_analysis_seconds_bucket", le="0.05") == 4
    assert value(text, "otpguard_build_info", version=__version__) == 1


def test_unknown_label_values_become_other(server) -> None:
    m, handle = server
    m.record_message(Decision(level=Level.CLEAN, score=0,
                              auth=AuthSummary(source="x", spf="bogus<script>", dmarc="PASS")),
                     "explode", -1.0, applied=("nonsense",))
    m.record_error("somewhere@example.org")
    m.dns_query(0.01, "weird")
    text = scrape(handle.url)
    assert value(text, "otpguard_messages_total", verdict="clean", action="other") == 1
    assert value(text, "otpguard_actions_total", action="other") == 1
    assert value(text, "otpguard_auth_total", method="spf", result="other") == 1
    assert value(text, "otpguard_auth_total", method="dmarc", result="pass") == 1  # case folded
    assert value(text, "otpguard_errors_total", stage="other") == 1
    assert value(text, "otpguard_dns_query_seconds_count", outcome="other") == 1
    # A negative duration (clock trouble) is not observed.
    assert value(text, "otpguard_analysis_seconds_count") == 0
    assert "example.org" not in text and "<script>" not in text and "explode" not in text


def test_label_sets_are_bounded_whatever_is_recorded() -> None:
    m = Metrics(symbols=SYMBOLS, process_metrics=False)
    before = len(samples(_expose(m)))
    for i in range(200):
        m.record_message(Decision(level=Level.PHISH, score=1,
                                  hits=(ScoredHit(symbol=f"SYM_{i}", score=1, reason=""),),
                                  auth=AuthSummary(source="x", spf=f"r{i}")),
                         f"act{i}", 0.01, applied=(f"a{i}",))
        m.record_error(f"stage{i}")
        m.dns_query(0.001, f"o{i}")
    assert len(samples(_expose(m))) == before


def _expose(m: Metrics) -> str:
    from prometheus_client import generate_latest
    return generate_latest(m.registry).decode()


def test_errors_dns_in_flight(server) -> None:
    m, handle = server
    m.record_error("dns")
    m.record_error("dns")
    m.record_error("state")
    m.dns_query(0.003, "ok")
    m.dns_query(2.5, "timeout")
    m.analysis_started()
    m.analysis_started()
    assert value(scrape(handle.url), "otpguard_messages_in_flight") == 2
    m.analysis_ended()
    m.analysis_ended()
    text = scrape(handle.url)
    assert value(text, "otpguard_messages_in_flight") == 0
    assert value(text, "otpguard_errors_total", stage="dns") == 2
    assert value(text, "otpguard_errors_total", stage="state") == 1
    assert value(text, "otpguard_errors_total", stage="parse") == 0
    assert value(text, "otpguard_dns_query_seconds_count", outcome="ok") == 1
    assert value(text, "otpguard_dns_query_seconds_bucket", outcome="timeout", le="2.0") == 0
    assert value(text, "otpguard_dns_query_seconds_bucket", outcome="timeout", le="5.0") == 1


def test_config_reloads_and_timestamp() -> None:
    now = [1_700_000_000.0]
    m = Metrics(clock=lambda: now[0], process_metrics=False)
    text = _expose(m)
    assert value(text, "otpguard_config_last_reload_success_timestamp_seconds") == 1_700_000_000.0
    assert value(text, "otpguard_config_last_reload_successful") == 1
    now[0] += 100
    m.config_reloaded(False)
    text = _expose(m)
    assert value(text, "otpguard_config_reloads_total", result="failure") == 1
    assert value(text, "otpguard_config_last_reload_successful") == 0
    # A failed reload keeps the old config: the last good timestamp does not move.
    assert value(text, "otpguard_config_last_reload_success_timestamp_seconds") == 1_700_000_000.0
    now[0] += 100
    m.config_reloaded(True)
    text = _expose(m)
    assert value(text, "otpguard_config_reloads_total", result="success") == 1
    assert value(text, "otpguard_config_last_reload_successful") == 1
    assert value(text, "otpguard_config_last_reload_success_timestamp_seconds") == 1_700_000_200.0


def test_bursts_aliases_and_quarantine_gauge() -> None:
    t = [0.0]
    calls = []

    def source() -> int:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("postqueue failed")
        return 7

    m = Metrics(process_metrics=False)
    assert math.isnan(value(_expose(m), "otpguard_quarantine_messages"))
    m.burst_detected(new=True)
    m.burst_detected(new=False)
    m.alias_mismatch()
    m.set_quarantine_source(source, cache_seconds=30, monotonic=lambda: t[0])
    text = _expose(m)
    assert value(text, "otpguard_code_bursts_total") == 1
    assert value(text, "otpguard_code_burst_notices_total") == 2
    assert value(text, "otpguard_alias_mismatches_total") == 1
    assert value(text, "otpguard_quarantine_messages") == 7
    assert value(_expose(m), "otpguard_quarantine_messages") == 7 and len(calls) == 1  # cached
    t[0] = 31
    text = _expose(m)  # the hook fails: NaN and an error, but the scrape still works
    assert math.isnan(value(text, "otpguard_quarantine_messages"))
    # The error counter was collected before the gauge ran the hook: it shows on the next scrape.
    assert value(_expose(m), "otpguard_errors_total", stage="quarantine") == 1
    t[0] = 62
    assert value(_expose(m), "otpguard_quarantine_messages") == 7


def test_record_message_counts_alias_mismatch_and_bursts() -> None:
    m = Metrics(process_metrics=False)  # ALIAS_MISMATCH is always a known symbol
    alias = Decision(level=Level.SUSPICIOUS, score=5, brand="amazon",
                     hits=(ScoredHit(symbol="ALIAS_MISMATCH", score=4, reason="alias: ..."),))
    m.record_message(alias, "tag", 0.01)
    first = BurstNotice(recipient_count=3, notice="n", subject_prefix="", language="en", new_burst=True)
    later = BurstNotice(recipient_count=4, notice="n", subject_prefix="", language="en", new_burst=False)
    m.record_message(genuine(), "tag", 0.01, applied=("burst_notice",), burst=first)
    m.record_message(genuine(), "monitor", 0.01, burst=later)  # monitor mode: detected, not applied
    text = _expose(m)
    assert value(text, "otpguard_alias_mismatches_total") == 1
    assert value(text, "otpguard_symbols_total", symbol="ALIAS_MISMATCH") == 1
    assert value(text, "otpguard_code_bursts_total") == 1
    assert value(text, "otpguard_code_burst_notices_total") == 2
    assert value(text, "otpguard_actions_total", action="burst_notice") == 1


def test_registries_are_independent() -> None:
    a, b = Metrics(process_metrics=False), Metrics(process_metrics=False)
    a.record_error("dns")
    assert value(_expose(a), "otpguard_errors_total", stage="dns") == 1
    assert value(_expose(b), "otpguard_errors_total", stage="dns") == 0


def test_process_metrics_are_exposed(server) -> None:
    _, handle = server
    names = {n for n, _ in samples(scrape(handle.url))}
    assert "process_resident_memory_bytes" in names


@pytest.mark.parametrize("listen, expected", [
    ("127.0.0.1:9469", ("127.0.0.1", 9469)),
    (":9469", ("127.0.0.1", 9469)),
    ("0.0.0.0:1", ("0.0.0.0", 1)),
    ("[::1]:9469", ("::1", 9469)),
    ("localhost:80", ("localhost", 80)),
])
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["9469", "127.0.0.1:x", "127.0.0.1:70000", "mail.example.org:9469", "[::1]9469"])
def test_parse_listen_rejects(listen: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(listen)


def _refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True
    except OSError as exc:  # unreachable address: also not served
        return exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL) or isinstance(exc, TimeoutError)


def _non_loopback_ipv4() -> str | None:
    """This host's address on its default route, if it has one (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.255", 9))  # TEST-NET-1: connect() on UDP only picks a route
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


def test_metrics_only_on_the_configured_address() -> None:
    # Linux routes all of 127.0.0.0/8 to the loopback interface, so 127.0.0.2 always exists
    # and is a different local address from 127.0.0.1: a listener bound to 127.0.0.1 must
    # refuse it. The host's own non-loopback address (when it has one) must refuse too:
    # that is what an outside scraper would use.
    m = Metrics(process_metrics=False)
    handle = m.start_http("127.0.0.1:0")
    try:
        assert scrape(f"http://127.0.0.1:{handle.port}/metrics")
        assert _refused("127.0.0.2", handle.port)
        other = _non_loopback_ipv4()
        if other is not None:
            assert _refused(other, handle.port), other
    finally:
        handle.stop()
    # The other way round: bound to 127.0.0.2 as configured, 127.0.0.1 is refused.
    handle = m.start_http("127.0.0.2:0")
    try:
        assert handle.host == "127.0.0.2"
        assert "otpguard_build_info" in scrape(handle.url)
        assert _refused("127.0.0.1", handle.port)
    finally:
        handle.stop()
    assert _refused("127.0.0.2", handle.port)  # stop() released the port


def test_default_listen_is_loopback() -> None:
    from otpguard.config import MetricsConfig
    assert parse_listen(MetricsConfig().listen)[0] == "127.0.0.1"


def test_failed_messages_count_with_verdict_error_from_the_start() -> None:
    m = Metrics(process_metrics=False)
    text = _expose(m)
    # The series exist at 0 before the first failure, so rate() and alerts see the first one.
    assert value(text, "otpguard_messages_total", verdict="error", action="tempfail") == 0
    m.record_failed_message("tempfail")
    m.record_failed_message("tag")
    m.record_failed_message("tag")
    m.record_failed_message("explode")
    text = _expose(m)
    assert value(text, "otpguard_messages_total", verdict="error", action="tempfail") == 1
    assert value(text, "otpguard_messages_total", verdict="error", action="tag") == 2
    assert value(text, "otpguard_messages_total", verdict="error", action="other") == 1


def test_no_created_series_are_exported() -> None:
    m = Metrics(symbols=SYMBOLS, process_metrics=False)
    m.record_message(phish(), "quarantine", 0.03)
    names = {name for name, _ in samples(_expose(m))}
    assert names and not [n for n in names if n.endswith("_created")]


def test_policy_matches_are_counted_by_list_and_kind() -> None:
    m = Metrics(process_metrics=False)
    allowed = Decision(level=Level.CLEAN, score=-100.0, policy=("allow:dkim",),
                       hits=(ScoredHit(symbol="POLICY_ALLOW", score=-100.0, reason="allow list line 1: dkim:x"),))
    m.record_message(allowed, "accept", 0.01)
    m.record_message(Decision(level=Level.PHISH, score=100.0, policy=("allow:ip", "deny:from", "deny:weird")),
                     "quarantine", 0.01)
    text = _expose(m)
    assert value(text, "otpguard_policy_matches_total", list="allow", kind="dkim") == 1
    assert value(text, "otpguard_policy_matches_total", list="allow", kind="ip") == 1
    assert value(text, "otpguard_policy_matches_total", list="deny", kind="from") == 1
    assert value(text, "otpguard_policy_matches_total", list="deny", kind="other") == 1
    assert value(text, "otpguard_policy_matches_total", list="deny", kind="rcpt") == 0


def test_dns_probe_gauges() -> None:
    now = [1_700_000_000.0]
    m = Metrics(clock=lambda: now[0], process_metrics=False)
    assert math.isnan(value(_expose(m), "otpguard_dns_probe_success"))  # not run yet
    m.dns_probe(True)
    now[0] += 300
    m.dns_probe(False)
    text = _expose(m)
    assert value(text, "otpguard_dns_probe_success") == 0
    assert value(text, "otpguard_dns_probe_last_success_timestamp_seconds") == 1_700_000_000.0


def test_analysis_workers_gauge_restarts_and_cpu(server) -> None:
    m, handle = server
    text = scrape(handle.url)
    assert value(text, "otpguard_workers") == 0
    assert value(text, "otpguard_worker_restarts_total", reason="died") == 0
    assert "otpguard_worker_cpu_seconds_total" not in text  # no workers: no such series
    m.workers_running(4)
    m.worker_replaced("died")
    m.worker_replaced("overran")
    m.worker_replaced("eaten by a grue")
    cpu = [12.5]
    m.set_worker_cpu_source(lambda: cpu[0])
    text = scrape(handle.url)
    assert value(text, "otpguard_workers") == 4
    assert [value(text, "otpguard_worker_restarts_total", reason=r) for r in ("died", "overran", "other")] == [1, 1, 1]
    assert value(text, "otpguard_worker_cpu_seconds_total") == 12.5

    def broken() -> float:
        raise OSError("no /proc")

    m.set_worker_cpu_source(broken)
    text = scrape(handle.url)  # the scrape survives a failing source, and counts it (seen next time)
    assert "otpguard_worker_cpu_seconds_total" not in text
    assert value(scrape(handle.url), "otpguard_errors_total", stage="metrics") == 1
