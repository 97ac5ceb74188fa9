"""One gate for tests that need something this machine may lack (a server, the corpus, a tool).

Elsewhere a missing component skips the test with the reason. Where the suite must be complete
it fails instead: under CI (CI=true/1/yes, any case), and when running as root on Debian, where
`make test` installs every package the suite needs, so a missing one is a broken setup, not a
reason to pass by testing nothing.

It also counts the real servers tests start (Postfix, dnsmasq, Redis, `otpguard serve`), so
conftest can insist that every test that starts one, or uses a fixture that did, is marked
`integration`.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

_TRUE = ("true", "1", "yes")


def in_ci() -> bool:
    """CI is set to a true value (true, 1, yes; any case)."""
    return os.environ.get("CI", "").strip().lower() in _TRUE


def complete_suite_required() -> bool:
    """Must every test run here? Under CI, and as root on Debian (make test installs what is missing)."""
    if in_ci():
        return True
    return os.geteuid() == 0 and Path("/etc/debian_version").exists() and shutil.which("apt-get") is not None


def unavailable(what: str, reason: str) -> None:
    """The component is missing: fail where the suite must be complete, else skip saying why."""
    message = f"{what} unavailable: {reason}"
    if complete_suite_required():
        pytest.fail(f"{message} (CI, or root on Debian where `make test` installs it: this must not skip)")
    print(f"skipping: {message}")
    pytest.skip(message)


_servers_started = 0


def server_started(kind: str) -> None:
    """Called by the support classes each time they start a real server process."""
    global _servers_started
    _servers_started += 1


def servers_started() -> int:
    return _servers_started
