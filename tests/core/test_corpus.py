"""Golden tests over the development corpus: every lure tagged, every genuine mail clean."""
from __future__ import annotations

import csv

import pytest

from conftest import need_corpus
from otpguard.core.model import Envelope, Level

CORPUS = need_corpus.__globals__["CORPUS"]


def _manifest() -> list[tuple[str, str]]:
    path = CORPUS / "MANIFEST.tsv"
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return [(row["file"], row["label"]) for row in csv.DictReader(fh, delimiter="\t")]


MANIFEST = _manifest()


@pytest.mark.parametrize("name", [f for f, label in MANIFEST if label == "phish"])
def test_every_phish_sample_is_tagged(engine, corpus, name):
    d = engine.analyse((corpus / name).read_bytes(), Envelope())
    assert d.level in (Level.SUSPICIOUS, Level.PHISH), [(h.symbol, h.score) for h in d.hits]


@pytest.mark.parametrize("name", [f for f, label in MANIFEST if label in ("legit", "hardneg")])
def test_every_genuine_and_hard_negative_sample_is_clean(engine, corpus, name):
    d = engine.analyse((corpus / name).read_bytes(), Envelope())
    assert d.level is Level.CLEAN, [(h.symbol, h.score, h.reason) for h in d.hits]


def test_at_least_nine_in_ten_phish_reach_phish_level(engine, corpus):
    phish = [f for f, label in MANIFEST if label == "phish"]
    hard = sum(engine.analyse((corpus / f).read_bytes(), Envelope()).level is Level.PHISH for f in phish)
    assert phish and hard / len(phish) >= 0.90


@pytest.mark.parametrize("folder", ["easy_ham", "easy_ham_2", "hard_ham"])
def test_ordinary_ham_is_never_tagged(engine, corpus, folder):
    tagged = []
    for path in sorted((corpus / "traffic" / folder).iterdir()):
        d = engine.analyse(path.read_bytes(), Envelope())
        if d.level is not Level.CLEAN:
            tagged.append((path.name, d.score, [h.symbol for h in d.hits]))
    assert tagged == []


def test_spam_spoofing_the_brand_address_is_tagged(engine, corpus):
    # traffic/SOURCES.md: these spam files put an @amazon.com address in From.
    for name in ("spam/00317.22fe43af6f4c707c4f1bdc56af959a8e", "spam_2/00737.af5f503fe444ae773bfeb4652d122349"):
        d = engine.analyse((corpus / "traffic" / name).read_bytes(), Envelope())
        assert d.brand == "amazon" and "FROM_BRAND_UNSIGNED" in {h.symbol for h in d.hits}
