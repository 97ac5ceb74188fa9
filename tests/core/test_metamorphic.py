"""Metamorphic tests: meaning-preserving rewrites of dev mail keep their verdict.

Every transform in tests/metamorphic (identity moves, forwards, list copies, paraphrases,
rendering tricks) runs on a bounded, deterministic sample of the dev corpus: a phish stays at
its level (phish stays phish), a genuine or hard-negative mail stays clean. The whole cross
product runs in `make eval`, reported as rates per transform.
"""
from __future__ import annotations

import random

import pytest

from conftest import CORPUS
from metamorphic import load_all
from otpguard.core.model import Envelope, Level
from support.corpus import manifest

pytestmark = pytest.mark.verdict

TRANSFORMS = load_all()
PER_TRANSFORM = 8  # files per label and transform that it changes, in make test; make eval takes them all
_LABELLED = manifest(CORPUS) if (CORPUS / "MANIFEST.tsv").is_file() else []
_GROUPS = {"phish": [f for f, lb in _LABELLED if lb == "phish"],
           "genuine": [f for f, lb in _LABELLED if lb in ("legit", "hardneg")]}
_RANK = {Level.CLEAN: 0, Level.SUSPICIOUS: 1, Level.PHISH: 2}


def sample(files: list[str], n: int, seed: str) -> list[str]:
    """n files spread over the list, the same every run for the same seed."""
    rng = random.Random(seed)
    return sorted(rng.sample(files, min(n, len(files))))


def _why(d) -> list[tuple[str, float, str]]:
    return [(h.symbol, h.score, h.reason) for h in d.hits]


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transform_keeps_the_verdict(engine, corpus, name):
    t = TRANSFORMS[name]
    applied, broken = 0, []
    for label in t.applies_to:
        taken = 0
        for f in sample(_GROUPS[label], len(_GROUPS[label]), f"{name}/{label}"):  # shuffled, the same every run
            if taken == PER_TRANSFORM:
                break
            raw = (corpus / f).read_bytes()
            new = t.rewrite(raw, random.Random(f"{name}/{f}"))
            if new is None:
                continue
            applied += 1
            taken += 1
            before = engine.analyse(raw, Envelope()).level
            after = engine.analyse(new, Envelope())
            if label == "genuine":
                ok = after.level is Level.CLEAN or before is not Level.CLEAN
            else:
                ok = _RANK[after.level] >= _RANK[before]
            if not ok:
                broken.append((f, before.value, after.level.value, after.score, _why(after)[:8]))
    assert applied, f"{name} changed none of its sample: a transform that never applies tests nothing"
    assert broken == [], broken
