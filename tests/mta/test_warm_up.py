"""serve pays the analysis's first-use costs once, before the zygote forks the workers."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from otpguard.core.model import Level
from otpguard.mta import serve

ROOT = Path(__file__).resolve().parents[2]


def test_the_warm_up_message_takes_the_common_paths_without_dns(config, monkeypatch):
    verifying = replace(config, auth=replace(config.auth, verify=True))

    def no_dns(*args, **kwargs):
        raise AssertionError("the warm-up must not build a DNS client")

    monkeypatch.setattr("otpguard.auth.dnsio.DnsClient.from_config", no_dns)
    d = serve._warm_up(verifying)
    assert d is not None and d.level is Level.PHISH
    found = {h.symbol for h in d.hits}
    # The claim, the HTML and its links, a phone number and the lure vocabulary were all read.
    assert {"IMPERSONATION", "LINK_OFF_BRAND", "CALLBACK_PHONE_NUMBER", "ACCOUNT_LOCKED_LURE"} <= found


def test_a_failing_warm_up_never_refuses_the_start(config, monkeypatch):
    def broken(self, raw, envelope, **kwargs):
        raise RuntimeError("broken analysis")

    monkeypatch.setattr("otpguard.engine.Engine.analyse", broken)
    assert serve._warm_up(config) is None


def test_the_libraries_a_first_message_needs_are_loaded_by_the_warm_up():
    probe = ("import sys; from otpguard.config import load_config; from otpguard.mta import serve; "
             "lazy = ('css_inline', 'phonenumbers'); "
             "before = [m for m in lazy if m in sys.modules]; "
             f"serve._warm_up(load_config({str(ROOT / 'conf' / 'otpguard.toml')!r})); "
             "print(before, [m for m in lazy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "milter"), "PATH": "/usr/bin:/bin"}).stdout.strip()
    assert out == "[] ['css_inline', 'phonenumbers']", out
