"""Prometheus metrics: they record decisions, they never make them.

Every label value comes from a fixed set chosen here or at construction, so a hostile message
cannot mint new time series (no addresses, domains or free text in labels); anything unknown is
counted under "other".
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import start_http_server
from prometheus_client.process_collector import ProcessCollector

from .. import __version__
from ..core.checks.aliases import ALIAS_MISMATCH
from .bursts import BurstNotice
from ..config import ACTIONS as CONFIG_ACTIONS
from ..core.model import Decision

OTHER = "other"

# No otpguard_*_created series: a timestamp per counter and histogram doubles what Prometheus
# stores for nothing an alert or a panel reads (process start time is process_start_time_seconds).
disable_created_metrics()

# Verdict of a message: the Decision level, "genuine" when authentication proved the brand, or
# "error" when the message failed (milter.on_error answered it; errors_total says where).
VERDICTS = ("clean", "suspicious", "phish", "genuine", "error", OTHER)

# The allow/deny lists ([policy], core/policy.py): which list matched, on which kind of entry.
POLICY_LISTS = ("allow", "deny", OTHER)
POLICY_KINDS = ("dkim", "dmarc", "spf", "ip", "rcpt", "rcpt_domain", "from", OTHER)

# What finally happened to a message (one per message; the strongest one taken):
# accept = passed unchanged, tag = delivered with our headers/subject/banner, quarantine = held,
# reject = 5xx, tempfail = 4xx (on_error = tempfail), monitor = monitor mode, nothing changed.
DISPOSITIONS = ("accept", "tag", "quarantine", "reject", "tempfail", "monitor", OTHER)

# Individual actions applied to a message (several per message): the config's action words plus
# the burst notice header.
ACTION_KINDS = (*CONFIG_ACTIONS, "burst_notice", OTHER)

# Where an error happened. The adapter's guard names the stage it was in.
STAGES = ("parse", "analysis", "dns", "auth", "policy", "actions", "quarantine", "state",
          "bursts", "config", "milter", "timeout", "metrics", "worker", OTHER)

# Why an analysis worker process was replaced (milter.workers > 1): it died (crash, OOM killer,
# kill -9), or it was killed because a message overran the time budget.
WORKER_RESTART_REASONS = ("died", "overran", OTHER)

AUTH_METHODS = ("spf", "dkim", "dmarc", "arc")
# RFC 8601 result words (section 2.7), plus "other" for anything else a peer may send.
AUTH_RESULTS = ("pass", "fail", "softfail", "neutral", "none", "policy", "temperror",
                "permerror", OTHER)

DNS_OUTCOMES = ("ok", "nxdomain", "nodata", "timeout", "servfail", "error", OTHER)

RELOAD_RESULTS = ("success", "failure")

# Analysis normally takes milliseconds; the top buckets reach the default 10 s time budget.
ANALYSIS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0)
DNS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)

# The quarantine size comes from `postqueue -j`; scrapes reuse a fresh-enough answer.
QUARANTINE_CACHE_SECONDS = 30.0


def _bounded(value: str | None, allowed: Iterable[str]) -> str:
    """Map a value onto a fixed label set; unknown values become "other"."""
    v = (value or "").strip().lower()
    return v if v in allowed else OTHER


def verdict_of(decision: Decision) -> str:
    """The verdict label of a decision."""
    if decision.genuine:
        return "genuine"
    return _bounded(str(decision.level), VERDICTS)


def _dkim_outcome(decision: Decision) -> str | None:
    """One DKIM result per message: pass if any signature passed, else the first result."""
    auth = decision.auth
    if auth is None:
        return None
    results = [d.result for d in auth.dkim]
    if not results:
        return "none"
    return "pass" if "pass" in results else results[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsServer:
    """A running /metrics listener; stop() closes it."""

    host: str
    port: int
    _server: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def parse_listen(listen: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """Split "HOST:PORT", "[V6]:PORT" or ":PORT" (host defaults to loopback)."""
    text = listen.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"bad listen address {listen!r}: expected [IPV6]:PORT")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"bad listen address {listen!r}: expected HOST:PORT")
    host = host or default_host
    try:
        ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"bad listen address {listen!r}: host must be an IP address") from None
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad listen address {listen!r}: bad port")
    return host, int(port)


class Metrics:
    """All otpguard metrics, in a registry of their own (tests can build several)."""

    def __init__(self, *, symbols: Iterable[str] = (), version: str = __version__,
                 clock: Callable[[], float] = time.time, process_metrics: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        # Only symbols named here get their own series; the set is fixed for the process life
        # (a config reload that adds a symbol counts it as "other" until restart).
        self.symbols = frozenset(symbols) | {ALIAS_MISMATCH, OTHER}
        r = self.registry
        self.messages = Counter("otpguard_messages", "Messages analysed, by verdict and final action.",
                                ["verdict", "action"], registry=r)
        self.symbols_fired = Counter("otpguard_symbols", "Symbols (check results) that fired.",
                                     ["symbol"], registry=r)
        self.auth = Counter("otpguard_auth", "Sender authentication outcomes, one per method per message.",
                            ["method", "result"], registry=r)
        self.actions = Counter("otpguard_actions", "Actions applied to messages (tag, quarantine, reject...).",
                               ["action"], registry=r)
        self.errors = Counter("otpguard_errors", "Errors, by the stage that failed.", ["stage"], registry=r)
        self.analysis_seconds = Histogram("otpguard_analysis_seconds",
                                          "Wall-clock seconds to analyse one message (parse, checks, DNS).",
                                          buckets=ANALYSIS_BUCKETS, registry=r)
        self.dns_seconds = Histogram("otpguard_dns_query_seconds", "Seconds per DNS query, by outcome.",
                                     ["outcome"], buckets=DNS_BUCKETS, registry=r)
        self.in_flight_gauge = Gauge("otpguard_messages_in_flight", "Messages being analysed right now.",
                                     registry=r)
        self.reloads = Counter("otpguard_config_reloads", "Configuration reloads (SIGHUP), by result.",
                               ["result"], registry=r)
        self.last_reload_ok = Gauge("otpguard_config_last_reload_successful",
                                    "1 if the last configuration (re)load succeeded, else 0.", registry=r)
        self.last_reload_ts = Gauge("otpguard_config_last_reload_success_timestamp_seconds",
                                    "Unix time of the last successful configuration load.", registry=r)
        self.bursts = Counter("otpguard_code_bursts",
                              "Bursts of genuine security-code mails to one recipient (threshold reached).",
                              registry=r)
        self.burst_notices = Counter("otpguard_code_burst_notices",
                                     "Messages marked with a code-burst notice.", registry=r)
        self.alias_mismatches = Counter("otpguard_alias_mismatches",
                                        "Brand mail sent to a recipient other than its registered alias.",
                                        registry=r)
        self.quarantine_gauge = Gauge("otpguard_quarantine_messages",
                                      "Messages in the Postfix hold queue (NaN: unknown).", registry=r)
        self.quarantine_gauge.set(math.nan)
        self.policy_matches = Counter("otpguard_policy_matches",
                                      "Messages an allow or deny list entry matched, by list and kind of entry.",
                                      ["list", "kind"], registry=r)
        self.dns_probe_success = Gauge("otpguard_dns_probe_success",
                                       "1 if the last DNS probe saw the brands' records, 0 if not (NaN: not run).",
                                       registry=r)
        self.dns_probe_success.set(math.nan)
        self.dns_probe_last_success = Gauge("otpguard_dns_probe_last_success_timestamp_seconds",
                                            "Unix time of the last DNS probe that saw the brands' records.",
                                            registry=r)
        self.workers_gauge = Gauge("otpguard_workers",
                                   "Analysis worker processes ready (0: analysis runs in the milter process).",
                                   registry=r)
        self.worker_restarts = Counter("otpguard_worker_restarts",
                                       "Analysis worker processes replaced, by why the old one ended.",
                                       ["reason"], registry=r)
        self._worker_cpu: Callable[[], float] | None = None
        r.register(_WorkerCpu(self))
        self.build_info = Gauge("otpguard_build_info", "Build information; the value is always 1.",
                                ["version"], registry=r)
        self.build_info.labels(version=version).set(1)
        if process_metrics:
            ProcessCollector(registry=r)
        # The process has just loaded its configuration; reloads update these later.
        self.last_reload_ok.set(1)
        self.last_reload_ts.set(clock())
        self._zero_series()

    def _zero_series(self) -> None:
        """Create every known series at 0 so rate() and alerts work from the first event."""
        for v in VERDICTS:
            for a in DISPOSITIONS:
                self.messages.labels(verdict=v, action=a)
        for s in self.symbols:
            self.symbols_fired.labels(symbol=s)
        for m in AUTH_METHODS:
            for res in AUTH_RESULTS:
                self.auth.labels(method=m, result=res)
        for a in ACTION_KINDS:
            self.actions.labels(action=a)
        for st in STAGES:
            self.errors.labels(stage=st)
        for o in DNS_OUTCOMES:
            self.dns_seconds.labels(outcome=o)
        for res in RELOAD_RESULTS:
            self.reloads.labels(result=res)
        for lst in POLICY_LISTS:
            for kind in POLICY_KINDS:
                self.policy_matches.labels(list=lst, kind=kind)
        for reason in WORKER_RESTART_REASONS:
            self.worker_restarts.labels(reason=reason)

    def record_message(self, decision: Decision, action: str, seconds: float, *,
                       applied: Iterable[str] | None = None, burst: BurstNotice | None = None) -> None:
        """Count one finished message: verdict, final action, symbols, auth, latency, burst."""
        disposition = _bounded(action, DISPOSITIONS)
        self.messages.labels(verdict=verdict_of(decision), action=disposition).inc()
        symbols = set(decision.symbols)
        for symbol in symbols:
            self.symbols_fired.labels(symbol=symbol if symbol in self.symbols else OTHER).inc()
        if ALIAS_MISMATCH in symbols:
            self.alias_mismatch()
        if burst is not None:
            self.burst_detected(new=burst.new_burst)
        # Without an explicit list, the final action stands for the actions applied.
        kinds = applied if applied is not None else (
            (disposition,) if disposition in ("tag", "quarantine", "reject") else ())
        for kind in set(kinds):
            self.actions.labels(action=_bounded(kind, ACTION_KINDS)).inc()
        self._record_auth(decision)
        for matched in decision.policy:
            which, _, kind = matched.partition(":")
            self.policy_matches.labels(list=_bounded(which, POLICY_LISTS), kind=_bounded(kind, POLICY_KINDS)).inc()
        if seconds >= 0:
            self.analysis_seconds.observe(seconds)

    def record_failed_message(self, action: str) -> None:
        """Count a message that hit an error (verdict "error"), with what it finally got:
        tempfail, tag (accepted with the error verdict), accept or monitor."""
        self.messages.labels(verdict="error", action=_bounded(action, DISPOSITIONS)).inc()

    def dns_probe(self, ok: bool) -> None:
        """Record the outcome of a DNS probe (ops/dnsprobe.py)."""
        self.dns_probe_success.set(1 if ok else 0)
        if ok:
            self.dns_probe_last_success.set(self._clock())

    def _record_auth(self, decision: Decision) -> None:
        auth = decision.auth
        if auth is None:
            return
        outcomes = {"spf": auth.spf, "dkim": _dkim_outcome(decision), "dmarc": auth.dmarc, "arc": auth.arc}
        for method, result in outcomes.items():
            self.auth.labels(method=method, result=_bounded(result, AUTH_RESULTS)).inc()

    def record_error(self, stage: str) -> None:
        """Count an error in a stage (unknown stages count as "other")."""
        self.errors.labels(stage=_bounded(stage, STAGES)).inc()

    def dns_query(self, seconds: float, outcome: str) -> None:
        """Observe one DNS query's latency and outcome."""
        self.dns_seconds.labels(outcome=_bounded(outcome, DNS_OUTCOMES)).observe(max(seconds, 0.0))

    def analysis_started(self) -> None:
        """A message is being analysed; pair with analysis_ended() in a finally block."""
        self.in_flight_gauge.inc()

    def analysis_ended(self) -> None:
        """The message's analysis returned or raised."""
        self.in_flight_gauge.dec()

    def config_reloaded(self, ok: bool) -> None:
        """Record a configuration reload attempt (a failed one keeps the old config running)."""
        self.reloads.labels(result="success" if ok else "failure").inc()
        self.last_reload_ok.set(1 if ok else 0)
        if ok:
            self.last_reload_ts.set(self._clock())

    def burst_detected(self, *, new: bool = True) -> None:
        """Count a burst notice (`new`: this message reached the threshold); record_message(burst=) calls it."""
        self.burst_notices.inc()
        if new:
            self.bursts.inc()

    def alias_mismatch(self) -> None:
        """Count an ALIAS_MISMATCH message; record_message calls it when the Decision has that symbol."""
        self.alias_mismatches.inc()

    def workers_running(self, count: int) -> None:
        """Analysis worker processes ready now (milter.workers > 1)."""
        self.workers_gauge.set(count)

    def worker_replaced(self, reason: str) -> None:
        """An analysis worker ended and a new one was started in its place."""
        self.worker_restarts.labels(reason=_bounded(reason, WORKER_RESTART_REASONS)).inc()

    def set_worker_cpu_source(self, source: Callable[[], float]) -> None:
        """Serve otpguard_worker_cpu_seconds_total from source (CPU seconds of all workers so far)."""
        self._worker_cpu = source

    def set_quarantine_source(self, source: Callable[[], int | None], *,
                              cache_seconds: float = QUARANTINE_CACHE_SECONDS,
                              monotonic: Callable[[], float] = time.monotonic) -> None:
        """Let scrapes read the hold-queue size from `source` (cached; None or an error gives NaN)."""
        lock = threading.Lock()
        cache: list[float] = []  # [value, taken_at]

        def read() -> float:
            with lock:
                now = monotonic()
                if cache and now - cache[1] < cache_seconds:
                    return cache[0]
                try:
                    n = source()
                    value = math.nan if n is None else float(n)
                except Exception:  # a failing hook must not break the whole scrape
                    self.record_error("quarantine")
                    value = math.nan
                cache[:] = [value, now]
                return value

        self.quarantine_gauge.set_function(read)

    def start_http(self, listen: str = "127.0.0.1:9469") -> MetricsServer:
        """Serve /metrics on `listen` ("HOST:PORT", host defaults to 127.0.0.1; port 0 picks one)."""
        host, port = parse_listen(listen)
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsServer(host=host, port=server.server_address[1], _server=server, _thread=thread)


class _WorkerCpu:
    """otpguard_worker_cpu_seconds_total: the analysis workers' CPU, beside process_cpu_seconds_total
    (which is the milter process's own). Absent while analysis runs in the milter process."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        source = self._metrics._worker_cpu
        if source is None:
            return []
        from prometheus_client.core import CounterMetricFamily

        try:
            value = float(source())
        except Exception:  # noqa: BLE001 - a failing source must not break the whole scrape
            self._metrics.record_error("metrics")
            return []
        return [CounterMetricFamily("otpguard_worker_cpu_seconds",
                                    "CPU seconds used by the analysis worker processes (milter.workers > 1).",
                                    value=value)]
