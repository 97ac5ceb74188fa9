"""Shared fixtures: the shipped config, an engine without DNS, the development corpus."""
from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import pytest

from otpguard.config import Config, load_config
from otpguard.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CONFIG = ROOT / "conf" / "otpguard.toml"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CORPUS = Path(os.environ.get("OTPGUARD_CORPUS", ROOT.parent / "shared" / "corpus"))


def need_corpus() -> Path:
    """The development corpus; CI must have it, elsewhere its absence skips with a reason."""
    if not (CORPUS / "phish").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the corpus is missing at {CORPUS} (CI must run beside ../shared)")
        pytest.skip(f"corpus not found at {CORPUS}")
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
