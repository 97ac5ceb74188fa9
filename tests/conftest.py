"""Shared fixtures: the shipped config, an engine without DNS, the development corpus."""
from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import pytest

from otpguard.config import Config, load_config
from otpguard.engine import Engine
from support.gate import unavailable

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CONFIG = ROOT / "conf" / "otpguard.toml"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CORPUS = Path(os.environ.get("OTPGUARD_CORPUS", ROOT.parent / "shared" / "corpus"))


def need_corpus() -> Path:
    """The development corpus; CI must have it, elsewhere its absence skips with a reason."""
    if not (CORPUS / "phish").is_dir():
        unavailable("the development corpus", f"not found at {CORPUS} (set OTPGUARD_CORPUS, or put shared/ beside the repo)")
    return CORPUS


@pytest.fixture(scope="session")
def config() -> Config:
    return load_config(SHIPPED_CONFIG)


@pytest.fixture(scope="session")
def engine(config: Config) -> Engine:
    """The shipped configuration with DNS verification off: the pure core only."""
    return Engine(replace(config, auth=replace(config.auth, verify=False)), verify=False)


@pytest.fixture(scope="session")
def corpus() -> Path:
    return need_corpus()


def mail(name: str) -> bytes:
    """A test message from tests/fixtures/mail."""
    return (FIXTURES / "mail" / name).read_bytes()


TRUSTED_ID = "mx.trusted.example"


def genuine_code_mail(message_id: str, trusted_id: str = TRUSTED_ID) -> bytes:
    """The Amazon.co.jp one-time-password fixture as a trusted border MTA passed it on (DMARC pass)."""
    raw = (FIXTURES / "auth" / "amazon_co_jp_otp.eml").read_bytes().replace(b"\r\n", b"\n")
    raw = re.sub(rb"(?m)^Message-ID: .*$", f"Message-ID: {message_id}".encode(), raw, count=1)
    ar = (f"Authentication-Results: {trusted_id}; spf=pass smtp.mailfrom=bounces.amazon.co.jp;"
          f" dkim=pass header.d=amazon.co.jp; dmarc=pass header.from=amazon.co.jp\n")
    return ar.encode() + raw


# --- the suite guards itself ------------------------------------------------------------------
# 1. No silent skips where the suite must be complete (CI, or root on Debian: gate.py).
# 2. A test that starts a real server, or uses a fixture that started one, carries the
#    `integration` marker (so `-m "not integration"` really is the quick, server-free suite).

_SERVER_FIXTURES: dict[tuple[str, str], str] = {}  # (defining node id, name) -> name


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    from support.gate import servers_started

    before = servers_started()
    yield
    if servers_started() > before:
        _SERVER_FIXTURES[(fixturedef.baseid, fixturedef.argname)] = fixturedef.argname


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    from support.gate import complete_suite_required, servers_started

    before = item.stash.get(_STARTED_KEY, None)
    outcome = yield
    report = outcome.get_result()
    if report.skipped and complete_suite_required() and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped where the suite must be complete (CI, or root on Debian): {report.longrepr}"
    if call.when == "call" and report.passed and item.get_closest_marker("integration") is None:
        defs = item._fixtureinfo.name2fixturedefs  # the fixtures this test really uses, by definition
        used = {name for name in item.fixturenames
                if name in defs and (defs[name][-1].baseid, name) in _SERVER_FIXTURES}
        started_here = before is not None and servers_started() > before
        if used or started_here:
            report.outcome = "failed"
            report.longrepr = (f"{item.nodeid} starts a real server ({', '.join(sorted(used)) or 'in its body'}) "
                               "but is not marked @pytest.mark.integration")


_STARTED_KEY = pytest.StashKey[int]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    from support.gate import servers_started

    item.stash[_STARTED_KEY] = servers_started()
