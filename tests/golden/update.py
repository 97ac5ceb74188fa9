#!/usr/bin/env python3
"""Rewrite tests/golden/corpus_levels.tsv from the current build: the verdict level of every
labelled corpus message (phish, legit, hardneg) under the empty envelope and the envelope it
records, and of every traffic/spam and spam_2 message.

A changed expectation is then a diff in review, never a silent drift:

    .venv/bin/python tests/golden/update.py && git diff tests/golden/
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from conftest import CORPUS, SHIPPED_CONFIG  # noqa: E402
from otpguard.config import load_config  # noqa: E402
from otpguard.core.model import Envelope  # noqa: E402
from otpguard.engine import Engine  # noqa: E402
from support.corpus import SPAM_FOLDERS, manifest, recorded_envelope, traffic  # noqa: E402

GOLDEN = TESTS / "golden" / "corpus_levels.tsv"


def rows(engine: Engine) -> list[tuple[str, str, str, str]]:
    """(file, label, envelope kind, level) for every message the golden pins."""
    out = []
    for name, label in manifest(CORPUS):
        raw = (CORPUS / name).read_bytes()
        for kind, env in (("empty", Envelope()), ("recorded", recorded_envelope(raw))):
            out.append((name, label, kind, engine.analyse(raw, env).level.value))
    for name in traffic(CORPUS, SPAM_FOLDERS):
        raw = (CORPUS / name).read_bytes()
        out.append((name, "spam", "empty", engine.analyse(raw, Envelope()).level.value))
    return out


def shipped_engine() -> Engine:
    cfg = load_config(SHIPPED_CONFIG)
    return Engine(replace(cfg, auth=replace(cfg.auth, verify=False)), verify=False)


def read() -> dict[tuple[str, str], str]:
    """(file, envelope kind) -> pinned level."""
    out = {}
    for line in GOLDEN.read_text(encoding="utf-8").splitlines()[1:]:
        name, _label, kind, level = line.split("\t")
        out[(name, kind)] = level
    return out


def main() -> int:
    lines = ["file\tlabel\tenvelope\tlevel"] + ["\t".join(r) for r in rows(shipped_engine())]
    GOLDEN.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines) - 1} rows to {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
