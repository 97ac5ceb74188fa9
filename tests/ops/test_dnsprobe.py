"""The DNS probe against real resolvers on loopback: can it see the brand's own records?"""
from __future__ import annotations

import logging
import math
from dataclasses import replace

import pytest

from otpguard.auth.dnsio import DnsClient
from otpguard.ops.dnsprobe import DnsProbe, probe, probe_domains
from otpguard.ops.metrics import Metrics
from support.dnsserver import (  # noqa: F401  (fixtures are used by name)
    BlackHoleServer,
    DnsmasqFactory,
    alarm,
    black_hole,
    dnsmasq_factory,
)

pytestmark = pytest.mark.integration

HEALTHY = {
    "amazon.com": {"TXT": ["v=spf1 include:amazonses.com -all"]},
    "_dmarc.amazon.com": {"TXT": ["v=DMARC1; p=quarantine; pct=100"]},
    "abcdef._domainkey.amazon.com": {"TXT": ["v=DKIM1; k=rsa; p=MIGf"]},
}


def client(port: int) -> DnsClient:
    return DnsClient(nameservers=("127.0.0.1",), port=port, query_timeout=0.5, cache_size=0)


def test_a_resolver_that_sees_the_brand_passes(dnsmasq_factory: DnsmasqFactory) -> None:
    server = dnsmasq_factory(HEALTHY)
    result = probe(client(server.port), ("amazon.com",))
    assert result.ok and result.problems == ()


def test_each_missing_record_is_one_problem(dnsmasq_factory: DnsmasqFactory) -> None:
    server = dnsmasq_factory({"amazon.com": {"TXT": ["v=spf1 -all"]},
                              "_dmarc.amazon.com": {"TXT": ["not a dmarc record"]}})
    result = probe(client(server.port), ("amazon.com",))
    assert result.problems == ("_dmarc.amazon.com: no DMARC record resolves",
                               "_domainkey.amazon.com: NXDOMAIN: no DKIM key of amazon.com can resolve")


def test_nxdomain_for_the_brand_means_a_broken_resolver(dnsmasq_factory: DnsmasqFactory) -> None:
    server = dnsmasq_factory({})
    result = probe(client(server.port), ("amazon.com", "amazon.co.jp"))
    assert [p.split(":")[0] for p in result.problems] == ["amazon.com", "amazon.co.jp"]
    assert all("NXDOMAIN" in p for p in result.problems)


def test_a_silent_resolver_is_a_problem_within_the_budget(black_hole: BlackHoleServer, alarm: None) -> None:
    result = probe(client(black_hole.port), ("amazon.com", "amazon.co.jp"), budget=1.0)
    assert not result.ok and all("DNS failure" in p for p in result.problems)


def test_the_probe_reports_changes_once_in_the_log_and_always_in_the_metric(
        dnsmasq_factory: DnsmasqFactory, config, caplog: pytest.LogCaptureFixture) -> None:
    good, bad = dnsmasq_factory(HEALTHY), dnsmasq_factory({})
    current = {"port": bad.port}
    cfg = replace(config, auth=replace(config.auth, verify=True, nameservers=("127.0.0.1",), query_timeout=0.5))
    assert probe_domains(cfg) == ("amazon.com",)  # the first domain of the shipped brand profile
    metrics = Metrics(process_metrics=False)
    runner = DnsProbe(lambda: cfg, metrics, client_for=lambda c: client(current["port"]))
    with caplog.at_level(logging.INFO, logger="otpguard"):
        for _ in range(2):
            runner.run_once()
        assert metrics.dns_probe_success._value.get() == 0
        current["port"] = good.port
        runner.run_once()
        runner.run_once()
    events = [r.getMessage() for r in caplog.records if r.name == "otpguard"]
    assert events == ["dns_probe_failed", "dns_probe"]
    failed = next(r for r in caplog.records if r.getMessage() == "dns_probe_failed")
    assert failed.levelno == logging.ERROR and "amazon.com: NXDOMAIN" in failed.fields["problems"][0]
    assert metrics.dns_probe_success._value.get() == 1
    # With DNS verification off there is nothing to probe.
    off = DnsProbe(lambda: replace(cfg, auth=replace(cfg.auth, verify=False)), Metrics(process_metrics=False))
    assert off.run_once() is None


def test_probe_domains_can_be_configured(config) -> None:
    cfg = replace(config, auth=replace(config.auth, probe_domains=("amazon.co.jp", "amazon.de")))
    assert probe_domains(cfg) == ("amazon.co.jp", "amazon.de")
    assert math.isnan(Metrics(process_metrics=False).dns_probe_success._value.get())
