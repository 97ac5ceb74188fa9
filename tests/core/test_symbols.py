"""Every symbol matters: a message where it fires, a near miss where it must not, and a weight
that decides a verdict.

The messages are tests/fixtures/symbols (written by compose.py there, committed); their levels
and symbols are pinned in tests/golden/symbol_fixtures.json. A symbol that stops firing, fires
where it should not, or stops mattering fails here:
- positive and near miss: `<SYMBOL>.eml` raises it, `<SYMBOL>.near.eml` (one piece of evidence
  taken away) does not;
- ablation: with the symbol's weight set to 0 through the config, the level of its boundary
  message changes. Where a symbol can never decide by its weight (it always comes with a
  decisive IMPERSONATION), its near miss must be of another level: its presence decides;
- contradictions: each entry of pipeline.CONTRADICTIONS makes the lure words of the brand's own
  From count again (`contradiction.<SYMBOL>.eml`), where nothing else would;
- languages: the lure kinds fire in every shipped language (`language.<lang>.eml`).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT
from otpguard.core.pipeline import CONTRADICTIONS, LURE_SYMBOLS, all_symbols
from support.symbols import analyse, engine_for, level_without

pytestmark = pytest.mark.verdict

HERE = FIXTURES / "symbols"
GOLDEN = json.loads((ROOT / "tests" / "golden" / "symbol_fixtures.json").read_text())
ELSEWHERE = {"NOT_ANALYSED": "tests/core/test_checks.py::test_oversized_message_is_not_analysed"}
LANGUAGES = ("ja", "en", "fr", "de", "es", "it", "pt", "zh")
LANGUAGE_KINDS = {"OTP_LURE", "ACCOUNT_LOCKED_LURE", "PAYMENT_LURE", "VERIFY_LURE"}
SYMBOLS = sorted(set(all_symbols()) - set(ELSEWHERE))


@pytest.fixture(scope="module")
def judged():
    return engine_for()


def _raw(name: str) -> bytes:
    return (HERE / f"{name}.eml").read_bytes()


def _symbols(judged, name: str) -> set[str]:
    return {h.symbol for h in analyse(judged[0], _raw(name)).hits}


def test_every_symbol_has_its_fixtures_or_says_where_it_is_tested():
    for symbol in SYMBOLS:
        assert (HERE / f"{symbol}.eml").is_file() and (HERE / f"{symbol}.near.eml").is_file(), symbol
    assert set(ELSEWHERE) | set(SYMBOLS) == set(all_symbols())
    assert set(GOLDEN) == {p.name.removesuffix(".eml") for p in HERE.glob("*.eml")}


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_symbol_fires_on_its_message_and_not_on_the_near_miss(judged, symbol):
    assert symbol in _symbols(judged, symbol)
    assert symbol not in _symbols(judged, f"{symbol}.near")


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_fixture_keeps_its_pinned_level_and_symbols(judged, name):
    d = analyse(judged[0], _raw(name))
    assert {"level": d.level.value, "symbols": sorted({h.symbol for h in d.hits})} == GOLDEN[name], \
        [(h.symbol, h.score, h.reason) for h in d.hits]


@pytest.mark.parametrize("symbol", [s for s in SYMBOLS if engine_for()[1].scoring.weights.get(s, 0) != 0])
def test_ablating_the_weight_changes_a_verdict(judged, symbol):
    engine, config = judged
    boundary = HERE / f"{symbol}.boundary.eml"
    if boundary.is_file():
        raw = boundary.read_bytes()
        assert level_without(engine, config, raw, symbol) != analyse(engine, raw).level
    else:
        # Decided by its presence, not its weight: the near miss is judged differently.
        assert GOLDEN[symbol]["level"] != GOLDEN[f"{symbol}.near"]["level"]
        assert "IMPERSONATION" in GOLDEN[symbol]["symbols"]


@pytest.mark.parametrize("symbol", sorted(CONTRADICTIONS))
def test_each_contradiction_makes_a_brand_froms_lure_words_count(judged, symbol):
    d = analyse(judged[0], _raw(f"contradiction.{symbol}"))
    assert symbol in d.symbols
    assert any(h.symbol in LURE_SYMBOLS and h.score > 0 for h in d.hits), d.hits
    # The same From with the same words and nothing contradicting it: the words count for nothing.
    base = analyse(judged[0], _raw("BRAND_SIGNATURE_UNVERIFIED"))
    assert not any(h.symbol in LURE_SYMBOLS and h.score > 0 for h in base.hits)


def test_every_contradiction_has_its_message():
    assert {p.name.removeprefix("contradiction.").removesuffix(".eml")
            for p in HERE.glob("contradiction.*.eml")} == set(CONTRADICTIONS)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_lure_kinds_fire_in_every_shipped_language(judged, lang):
    assert LANGUAGE_KINDS <= _symbols(judged, f"language.{lang}")


def test_the_composer_is_in_the_repository():
    assert (HERE / "compose.py").is_file() and Path(ROOT / "tests" / "support" / "symbols.py").is_file()
