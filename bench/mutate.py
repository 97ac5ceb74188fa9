#!/usr/bin/env python3
"""`make mutate`: would the verdict tests notice if the detection broke? A mutation run.

Each mutant is a copy of the package with one deliberate fault in the detection core:

- symbol: one symbol is never emitted (its check's hits of that symbol dropped);
- contradiction: one entry removed from pipeline.CONTRADICTIONS;
- phrase: one lure phrase removed from the vocabulary (a sample, phrases of every language);
- ast: one operator or constant changed in core/checks/*.py, core/pipeline.py or
  core/verdict.py (comparison flipped or loosened, and/or swapped, `not` dropped, a number
  nudged, a membership test inverted), a deterministic sample.

The mutant runs the verdict tests (`-m verdict` by default: per-file corpus levels, symbol
fixtures and ablations, metamorphic transforms). A mutant the tests still pass "survives": a
fault nobody would notice. The survival rate is what `make mutate` reports; lower is better.

    .venv/bin/python bench/mutate.py [--tree DIR] [--tests ARGS] [--budget SECONDS] [--jobs 2]
"""
from __future__ import annotations

import argparse
import ast
import concurrent.futures
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    kind: str
    target: str  # file relative to the package
    index: int  # which candidate in that file (ast), or -1
    label: str  # what the fault is, for the report

    def apply(self, package: Path) -> None:
        path = package / self.target
        source = path.read_text(encoding="utf-8")
        path.write_text(_MUTATORS[self.kind](self, source), encoding="utf-8")


# --- mutant kinds ----------------------------------------------------------------------------

def _drop_symbol(m: Mutant, source: str) -> str:
    # Every hit of the symbol, whoever makes it (a check, a composite, the alias rule), is
    # renamed on creation to a symbol nobody weighs or reads: the symbol is never emitted.
    symbol = m.label.split(" ", 1)[0]
    return source + f"""

_mutant_init = Hit.__init__


def _mutant_drop(self, *args, **kwargs):
    _mutant_init(self, *args, **kwargs)
    if self.symbol == {symbol!r}:
        object.__setattr__(self, "symbol", "MUTANT_DROPPED")


Hit.__init__ = _mutant_drop
"""


def _drop_contradiction(m: Mutant, source: str) -> str:
    entry = m.label.split(" ", 1)[0]
    new, n = re.subn(rf'"{entry}",\s*', "", source, count=1)
    assert n == 1, entry
    return new


def _drop_phrase(m: Mutant, source: str) -> str:
    tree = ast.parse(source)
    phrases = _phrase_nodes(tree)
    node = phrases[m.index]
    node.value = "(?!x)x"  # never matches: the phrase is gone, the list keeps its shape
    return ast.unparse(tree)


def _ast_mutation(m: Mutant, source: str) -> str:
    tree = ast.parse(source)
    candidates = _ast_candidates(tree)
    node, how = candidates[m.index]
    _AST_APPLY[how](node)
    return ast.unparse(tree)


_MUTATORS = {"symbol": _drop_symbol, "contradiction": _drop_contradiction, "phrase": _drop_phrase,
             "ast": _ast_mutation}

_FLIP = {ast.Lt: ast.GtE, ast.LtE: ast.Gt, ast.Gt: ast.LtE, ast.GtE: ast.Lt, ast.Eq: ast.NotEq,
         ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}


def _flip_compare(node: ast.Compare) -> None:
    node.ops[0] = _FLIP[type(node.ops[0])]()


def _swap_boolop(node: ast.BoolOp) -> None:
    node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()


def _drop_not(node: ast.UnaryOp) -> None:
    node.op = ast.UAdd()  # +x on a bool is the bool as an int: the negation is gone


def _nudge_number(node: ast.Constant) -> None:
    v = node.value
    node.value = (v + 1) if isinstance(v, int) else round(v * 1.5 + 0.1, 3)


_AST_APPLY = {"compare": _flip_compare, "boolop": _swap_boolop, "not": _drop_not, "number": _nudge_number}


def _ast_candidates(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    out: list[tuple[ast.AST, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and type(node.ops[0]) in _FLIP:
            out.append((node, "compare"))
        elif isinstance(node, ast.BoolOp):
            out.append((node, "boolop"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            out.append((node, "not"))
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float) and not isinstance(node.value, bool):
            out.append((node, "number"))
    return out


def _phrase_nodes(tree: ast.AST) -> list[ast.Constant]:
    """The string constants inside the LURES dict of vocabulary.py."""
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "LURES" or \
                isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "LURES" for t in node.targets):
            return [c for c in ast.walk(node.value) if isinstance(c, ast.Constant) and isinstance(c.value, str)
                    and c.value not in ("otp", "signin", "reset", "locked", "payment", "verify", "prize",
                                        "dispute", "urgency")]
    return []


# --- the mutant set ---------------------------------------------------------------------------

def mutants(package: Path, *, phrases: int, asts: int, seed: int) -> list[Mutant]:
    sys.path.insert(0, str(package.parent))
    try:
        from otpguard.core import pipeline  # noqa: PLC0415 - the tree under test
        from otpguard.config import load_config  # noqa: PLC0415

        weights = load_config(package.parent.parent / "conf" / "otpguard.toml").scoring.weights
        symbols = sorted(s for s in pipeline.all_symbols() if weights.get(s, 0) > 0)
        contradictions = sorted(pipeline.CONTRADICTIONS)
    finally:
        sys.path.pop(0)
    out = [Mutant("symbol", "core/model.py", -1, f"{s} never emitted") for s in symbols]
    out += [Mutant("contradiction", "core/pipeline.py", -1, f"{c} not a contradiction") for c in contradictions]
    rng = random.Random(seed)
    vocab = package / "core" / "vocabulary.py"
    nodes = _phrase_nodes(ast.parse(vocab.read_text(encoding="utf-8")))
    for i in sorted(rng.sample(range(len(nodes)), min(phrases, len(nodes)))):
        out.append(Mutant("phrase", "core/vocabulary.py", i, f"phrase {nodes[i].value[:50]!r} removed"))
    files = sorted(str(p.relative_to(package)) for p in (package / "core" / "checks").glob("*.py")
                   if p.name != "__init__.py") + ["core/pipeline.py", "core/verdict.py"]
    pool = []
    for f in files:
        tree = ast.parse((package / f).read_text(encoding="utf-8"))
        for i, (node, how) in enumerate(_ast_candidates(tree)):
            pool.append(Mutant("ast", f, i, f"{how} at {f}:{node.lineno}"))
    out += sorted(rng.sample(pool, min(asts, len(pool))), key=lambda m: (m.target, m.index))
    return out


# --- running ----------------------------------------------------------------------------------

def run_one(tree: Path, mutant: Mutant, tests: list[str], timeout: float) -> tuple[Mutant, str, float]:
    """'killed', 'survived' or 'timeout' (counted as killed: a hang is noticed)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="otpguard-mutant-") as tmp:
        package = Path(tmp) / "otpguard"
        shutil.copytree(tree / "milter" / "otpguard", package, ignore=shutil.ignore_patterns("__pycache__"))
        mutant.apply(package)
        env = dict(os.environ, PYTHONPATH=tmp, PYTHONDONTWRITEBYTECODE="1", CI="")
        try:
            done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                   "--no-header", *tests], cwd=tree, env=env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return mutant, "timeout", time.monotonic() - started
    verdict = "survived" if done.returncode == 0 else "killed"
    if done.returncode not in (0, 1):  # 2+: collection or usage error: the mutant broke the import
        verdict = "killed"
    return mutant, verdict, time.monotonic() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", type=Path, default=ROOT, help="checkout to mutate and test (default: this one)")
    ap.add_argument("--tests", default="-m verdict tests/core",
                    help='pytest arguments selecting the tests (default: "-m verdict tests/core")')
    ap.add_argument("--phrases", type=int, default=40, help="lure phrases removed, one per mutant (sample)")
    ap.add_argument("--ast", type=int, default=60, help="operator/constant mutants (sample)")
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--budget", type=float, default=1800, help="seconds for the whole run; the rest is not run")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per mutant")
    args = ap.parse_args()
    tree = args.tree.resolve()
    todo = mutants(tree / "milter" / "otpguard", phrases=args.phrases, asts=args.ast, seed=args.seed)
    # In a random (seeded) order: a run cut short by the budget is a fair sample of every kind.
    random.Random(args.seed).shuffle(todo)
    tests = args.tests.split()
    # The tests must pass on the tree as it is, or every mutant would look killed. The tree's own
    # package first (as the mutants' copies are): an editable install may point at another checkout.
    baseline = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header",
                               *tests], cwd=tree, env=dict(os.environ, CI="", PYTHONPATH=str(tree / "milter")),
                              capture_output=True, text=True)
    if baseline.returncode != 0:
        print("the selected tests fail without any mutant: fix or deselect them first\n" + baseline.stdout[-2000:])
        return 2
    print(f"{len(todo)} mutants of {tree}, tests: {' '.join(tests)}", flush=True)
    deadline = time.monotonic() + args.budget
    results: list[tuple[Mutant, str, float]] = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        pending = {}
        queue = list(todo)
        while queue or pending:
            while queue and len(pending) < args.jobs and time.monotonic() < deadline:
                m = queue.pop(0)
                pending[pool.submit(run_one, tree, m, tests, args.timeout)] = m
            if not pending:
                break
            done, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for fut in done:
                del pending[fut]
                m, verdict, secs = fut.result()
                results.append((m, verdict, secs))
                if verdict == "survived":
                    print(f"  SURVIVED  {m.kind:13} {m.label}", flush=True)
    by_kind: dict[str, list[str]] = {}
    for m, verdict, _ in results:
        by_kind.setdefault(m.kind, []).append(verdict)
    print(f"\nmutation run: {len(results)} of {len(todo)} mutants run within {args.budget:.0f} s")
    for kind, verdicts in by_kind.items():
        survived = verdicts.count("survived")
        print(f"  {kind:13} {survived:3} of {len(verdicts):3} survived ({100 * survived / len(verdicts):.0f}%)")
    total = [v for vs in by_kind.values() for v in vs]
    survived = total.count("survived")
    print(f"  {'all':13} {survived:3} of {len(total):3} survived ({100 * survived / max(1, len(total)):.0f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
