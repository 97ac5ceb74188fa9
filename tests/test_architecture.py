"""The layering is enforced, not hoped for (docs/architecture.md).

`lint-imports` checks the contracts in pyproject.toml ([tool.importlinter]): layers that point
one way, a core without I/O, one module that imports Milter, no import circle. The second test
proves the contracts bite: a copy of the package with one violation of each kind fails them.
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "milter" / "otpguard"
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(pythonpath: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    return subprocess.run([str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_import_contracts_hold():
    done = _lint(ROOT / "milter", ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "5 kept, 0 broken" in done.stdout


def test_each_kind_of_violation_breaks_a_contract(tmp_path):
    copy = tmp_path / "otpguard"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "core" / "normalize.py").open("a") as fh:
        fh.write("\nimport socket  # I/O in the core\n")
    with (copy / "core" / "verdict.py").open("a") as fh:
        fh.write("\nfrom ..engine import Engine  # the core reaching up: a layer break and a circle\n")
    with (copy / "ops" / "logs.py").open("a") as fh:
        fh.write("\nimport Milter  # Milter outside the adapter\n")
    done = _lint(tmp_path, tmp_path)
    assert done.returncode != 0
    out = done.stdout
    assert "Dependencies point one way" in out and "BROKEN" in out
    assert "otpguard.core is not allowed to import socket" in out
    assert "Only the adapter imports Milter (pymilter) and libmilter BROKEN" in out
    assert "otpguard.ops.logs -> Milter" in out
    assert "No import circle anywhere in the package BROKEN" in out
    assert "0 kept" not in out  # the untouched contract (auth) still holds


def test_every_module_says_its_job_in_its_first_docstring_line():
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        if not doc or not doc.splitlines()[0].strip():
            missing.append(str(path.relative_to(PACKAGE)))
    assert missing == []


def test_only_the_adapter_module_mentions_the_milter_library():
    importers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            if any(n.split(".")[0] in ("Milter", "milter") for n in names):
                importers.append(str(path.relative_to(PACKAGE)))
    assert sorted(set(importers)) == ["mta/adapter.py"]
