"""The DNS probe: can the resolver see the protected brands' own records?

A resolver that answers NXDOMAIN for amazon.com (a filtering resolver, a broken forwarder, a
split-horizon view without the Internet) cannot verify any Amazon signature. otpguard then
reports every result about the brand as temperror, never as a failure (auth/verify.py): mail is
not lost, but nothing is authenticated either, and bursts of genuine codes go unseen. The probe
makes that visible: at start and every [auth] probe_interval_seconds it asks for each probe
domain that the domain exists, that its _dmarc policy resolves, and that its _domainkey tree
exists (RFC 8020: an empty non-terminal above the DKIM keys answers NOERROR, so no selector
needs to be known). The outcome is the gauge otpguard_dns_probe_success and a log line when it
changes; the alert OtpguardDnsProbeFailing fires on it.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..auth.dnsio import DnsClient, DnsTempError
from ..config import Config
from . import logs

# A probe of a few names must not take long even against a black hole: queries are bounded
# by the configured query_timeout, the whole probe by this many seconds.
PROBE_BUDGET_SECONDS = 10.0
# With the probe off (or DNS verification off), how often the loop looks at the config again.
IDLE_SECONDS = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeResult:
    """What one probe found: problems, one line each (empty: all good)."""

    domains: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def probe_domains(config: Config) -> tuple[str, ...]:
    """[auth] probe_domains, or the first domain of each brand profile."""
    if config.auth.probe_domains:
        return config.auth.probe_domains
    return tuple(dict.fromkeys(b.domains[0] for b in config.brands if b.domains))


def probe_client(config: Config) -> DnsClient:
    """A resolver client like the milter's, without a cache: the probe asks the resolver itself."""
    a = config.auth
    return DnsClient(nameservers=a.nameservers, port=a.port, query_timeout=a.query_timeout, cache_size=0)


def _is_dmarc(text: str) -> bool:
    return text.replace(" ", "").replace("\t", "").lower().startswith("v=dmarc1")


def probe(dns: DnsClient, domains: tuple[str, ...], *, budget: float = PROBE_BUDGET_SECONDS) -> ProbeResult:
    """Ask the resolver about each domain; one problem line per thing it cannot see."""
    problems: list[str] = []
    with dns.budget(budget):
        for domain in domains:
            try:
                if not dns.exists(domain):
                    problems.append(f"{domain}: NXDOMAIN: the resolver says the domain does not exist "
                                    "(broken or filtering resolver); its mail cannot be authenticated")
                    continue
                if not any(_is_dmarc(t) for t in dns.txt(f"_dmarc.{domain}")):
                    problems.append(f"_dmarc.{domain}: no DMARC record resolves")
                if not dns.exists(f"_domainkey.{domain}"):
                    problems.append(f"_domainkey.{domain}: NXDOMAIN: no DKIM key of {domain} can resolve")
            except DnsTempError as exc:
                problems.append(f"{domain}: DNS failure: {exc}")
    return ProbeResult(domains=domains, problems=tuple(problems))


class DnsProbe:
    """Runs the probe at start and periodically, and reports it (metric, log on every change)."""

    def __init__(self, current_config: Callable[[], Config], metrics: Any = None,
                 client_for: Callable[[Config], DnsClient] = probe_client) -> None:
        self._config = current_config
        self._metrics = metrics
        self._client_for = client_for
        self._last_ok: bool | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> ProbeResult | None:
        """One probe with the current config; None when DNS verification is off."""
        config = self._config()
        if not config.auth.verify:
            return None
        result = probe(self._client_for(config), probe_domains(config))
        if self._metrics is not None:
            self._metrics.dns_probe(result.ok)
        if result.ok != self._last_ok:
            if result.ok:
                logs.event("dns_probe", domains=list(result.domains), result="ok")
            else:
                logs.event("dns_probe_failed", logging.ERROR, domains=list(result.domains),
                           problems=list(result.problems),
                           note="results about these domains are temperror until the resolver sees them")
        self._last_ok = result.ok
        return result

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - the probe must never take the milter down
                logs.event("dns_probe_failed", logging.ERROR, problems=[f"{type(exc).__name__}: {exc}"])
            interval = self._config().auth.probe_interval_seconds
            self._stop.wait(interval if interval > 0 else IDLE_SECONDS)
            while self._config().auth.probe_interval_seconds <= 0 and not self._stop.is_set():
                self._stop.wait(IDLE_SECONDS)

    def start(self) -> DnsProbe:
        """Start probing on a daemon thread (first probe at once) unless the probe is off."""
        if self._config().auth.probe_interval_seconds <= 0:
            return self
        self._thread = threading.Thread(target=self._loop, name="otpguard-dns-probe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
