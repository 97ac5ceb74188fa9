"""The Python distributions the Debian package bundles, pinned to the versions the tests ran on.

otpguard's runtime requirements (pyproject.toml) are walked through the installed metadata of
the development venv, their markers evaluated for the target interpreter (Debian's python3, e.g.
3.11.2: redis then needs async-timeout). Requirements Debian ships in a version we accept are
taken from Debian instead (debian/control Depends) and not bundled; everything else is printed
as NAME==VERSION, one per line, for `pip wheel --no-deps`.

Usage: deb_vendor.py TARGET_PYTHON_VERSION
"""
from __future__ import annotations

import importlib.metadata as md
import sys
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
# Taken from Debian (bookworm versions satisfy our requirements; see debian/control).
FROM_DEBIAN = {canonicalize_name(n) for n in (
    "pymilter",       # python3-milter 1.0.5: built against Debian's libmilter
    "pyspf",          # python3-spf 2.0.14
    "authres",        # python3-authres 1.2.0
    "requests",       # python3-requests (tldextract's, never used at run time: no PSL download)
    "requests-file",  # python3-requests-file
    "filelock",       # python3-filelock
    "idna",           # python3-idna
    # python3-pil 9.4: decodes attacker pictures (QR codes), so Debian's security updates matter
    # more than a newer version; its wheel also embeds libjpeg, libtiff and more (lintian).
    "pillow",
)}


def target_environment(version: str) -> dict[str, str]:
    env = dict(default_environment())
    env["python_full_version"] = version
    env["python_version"] = ".".join(version.split(".")[:2])
    return env


def bundled(version: str) -> list[str]:
    env = target_environment(version)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    pins: dict[str, str] = {}
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or name in FROM_DEBIAN or (req.marker and not req.marker.evaluate({**env, "extra": ""})):
            continue
        seen.add(name)
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            # Not needed by the venv's own Python (a marker for the target only): newest that fits.
            pins[name] = str(req.specifier) or ""
            continue
        pins[name] = f"=={dist.version}"
        todo += [Requirement(r) for r in (dist.requires or [])]
    return [f"{n}{spec}" for n, spec in sorted(pins.items())]


if __name__ == "__main__":
    print("\n".join(bundled(sys.argv[1])))
