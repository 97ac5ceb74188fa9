"""The development corpus, per file: each message's verdict level is pinned in
tests/golden/corpus_levels.tsv, under the empty envelope (offline scan) and under the envelope
the message records (its Return-Path and newest Received hop: the production path).

A changed level is a reviewed diff of the golden file (tests/golden/update.py rewrites it),
never a silent drift. Beside the pins, the invariants that no golden may break: every lure is
tagged, every genuine and hard-negative mail is clean, ordinary ham is never tagged.
"""
from __future__ import annotations

import pytest

from conftest import CORPUS, need_corpus
from golden.update import read as read_golden
from otpguard.core.model import Envelope, Level
from support.corpus import HAM_FOLDERS, SPAM_FOLDERS, manifest, recorded_envelope, traffic

pytestmark = pytest.mark.verdict

need_corpus_at_collect = (CORPUS / "MANIFEST.tsv").is_file()
MANIFEST = manifest(CORPUS) if need_corpus_at_collect else []
GOLDEN = read_golden()
ENVELOPES = ("empty", "recorded")


def _envelope(kind: str, raw: bytes) -> Envelope:
    return Envelope() if kind == "empty" else recorded_envelope(raw)


def _analyse(engine, name: str, kind: str):
    raw = (need_corpus() / name).read_bytes()
    return engine.analyse(raw, _envelope(kind, raw))


def _why(d) -> list[tuple[str, float, str]]:
    return [(h.symbol, h.score, h.reason) for h in d.hits]


def test_the_golden_file_pins_every_labelled_and_spam_message(corpus):
    labelled = {(name, kind) for name, _ in manifest(corpus) for kind in ENVELOPES}
    spam = {(name, "empty") for name in traffic(corpus, SPAM_FOLDERS)}
    assert set(GOLDEN) == labelled | spam
    assert len(labelled) >= 2 * 100 and len(spam) >= 1800


@pytest.mark.parametrize("kind", ENVELOPES)
@pytest.mark.parametrize("name", [f for f, label in MANIFEST if label == "phish"])
def test_each_phish_reaches_its_pinned_level_and_is_tagged(engine, name, kind):
    d = _analyse(engine, name, kind)
    assert d.level.value == GOLDEN[(name, kind)], _why(d)
    assert d.level in (Level.SUSPICIOUS, Level.PHISH), _why(d)


@pytest.mark.parametrize("kind", ENVELOPES)
@pytest.mark.parametrize("name", [f for f, label in MANIFEST if label in ("legit", "hardneg")])
def test_each_genuine_and_hard_negative_mail_is_clean(engine, name, kind):
    d = _analyse(engine, name, kind)
    assert d.level.value == GOLDEN[(name, kind)], _why(d)
    assert d.level is Level.CLEAN, _why(d)


@pytest.mark.parametrize("folder", SPAM_FOLDERS)
def test_spam_keeps_its_pinned_levels(engine, corpus, folder):
    changed = []
    for name in traffic(corpus, (folder,)):
        d = engine.analyse((corpus / name).read_bytes(), Envelope())
        if d.level.value != GOLDEN[(name, "empty")]:
            changed.append((name, GOLDEN[(name, "empty")], d.level.value, _why(d)))
    assert changed == []


@pytest.mark.parametrize("folder", HAM_FOLDERS)
def test_ordinary_ham_is_never_tagged(engine, corpus, folder):
    tagged = []
    for name in traffic(corpus, (folder,)):
        d = engine.analyse((corpus / name).read_bytes(), Envelope())
        if d.level is not Level.CLEAN:
            tagged.append((name, d.score, [h.symbol for h in d.hits]))
    assert tagged == []


def test_spam_spoofing_the_brand_address_is_tagged(engine, corpus):
    # traffic/SOURCES.md: these spam files put an @amazon.com address in From.
    for name in ("spam/00317.22fe43af6f4c707c4f1bdc56af959a8e", "spam_2/00737.af5f503fe444ae773bfeb4652d122349"):
        d = engine.analyse((corpus / "traffic" / name).read_bytes(), Envelope())
        assert d.brand == "amazon" and d.level is Level.PHISH, _why(d)
        assert {"FROM_BRAND_UNSIGNED", "IMPERSONATION"} <= {h.symbol for h in d.hits}
