"""The man pages and shell completions are generated from the code and committed: they must be
what tools/gen_docs.py produces now (run `make man` after changing options or the config)."""
from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import gen_docs  # noqa: E402
from otpguard.cli import build_parser  # noqa: E402


@pytest.mark.parametrize("rel, kind", sorted(gen_docs.OUTPUTS.items()))
def test_committed_file_is_current(rel: str, kind: str) -> None:
    assert (ROOT / rel).read_text() == gen_docs.generate(kind), f"{rel} is stale: run `make man` and commit"


@pytest.mark.parametrize("page", ["man/otpguard.1", "man/otpguard.toml.5"])
def test_man_pages_render_without_warnings(page: str) -> None:
    res = subprocess.run(["groff", "-k", "-man", "-Tutf8", "-ww", "-z", str(ROOT / page)],
                         capture_output=True, text=True, timeout=60)
    # A Japanese phrase has no space to break at: the one warning a terminal width can cause.
    warnings = [ln for ln in res.stderr.splitlines() if "can't break line" not in ln]
    assert res.returncode == 0 and warnings == []


def _options(parser: argparse.ArgumentParser) -> set[str]:
    out = set()
    for action in parser._actions:
        out.update(o for o in action.option_strings if o not in ("-h", "--help"))
        if isinstance(action, argparse._SubParsersAction):
            for sp in action.choices.values():
                out |= _options(sp)
    return out


def test_man1_documents_every_option_of_every_command() -> None:
    page = (ROOT / "man" / "otpguard.1").read_text().replace("\\-", "-")
    parser, _ = build_parser(every=True)
    missing = sorted(o for o in _options(parser) if f"\\fB{o}\\fR" not in page)
    assert missing == []
    for command in ("scan", "explain", "check-config", "serve", "quarantine", "quarantine release"):
        assert f"otpguard {command}" in page


def _keys(table: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in table.items():
        if isinstance(value, dict):
            out += _keys(value, f"{prefix}{key}.")
        else:
            out.append(key)
    return out


def test_man5_documents_every_key_with_its_default() -> None:
    page = (ROOT / "man" / "otpguard.toml.5").read_text().replace("\\-", "-")
    conf = tomllib.loads((ROOT / "conf" / "otpguard.toml").read_text())
    missing = [k for k in _keys(conf) if f"\\fB{k}\\fR = " not in page]
    assert missing == []
    assert '\\fBreleased_verdict\\fR = "released"' in page and '.SS "[quarantine]"' in page


def _complete(*words: str) -> list[str]:
    script = (f"source {ROOT / 'completion' / 'otpguard.bash'}; COMP_WORDS=({' '.join(repr(w) for w in words)});"
              " COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); _shtab_otpguard; printf '%s\\n' \"${COMPREPLY[@]}\"")
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return [w for w in res.stdout.splitlines() if w]


def test_bash_completion_completes_commands_options_and_choices() -> None:
    assert _complete("otpguard", "qua") == ["quarantine"]
    assert _complete("otpguard", "quarantine", "re") == ["release"]
    assert "--older-than" in _complete("otpguard", "quarantine", "list", "--o")
    assert _complete("otpguard", "scan", "--only", "s") == ["suspicious"]


def test_zsh_completion_names_every_command() -> None:
    text = (ROOT / "completion" / "_otpguard").read_text()
    assert text.startswith("#compdef otpguard")
    for command in ("scan", "explain", "check-config", "serve", "quarantine", "release", "--older-than"):
        assert command in text
