#!/usr/bin/env python3
"""`make eval`: detection on the development corpus, as Markdown tables.

1. Per label: tagged (suspicious or phish) and at phish level, DNS off, shipped weights.
2. Template-balanced phish rates: phish that share a template (the same lure sent many times,
   found by text similarity) form one group, and every group weighs the same. A rule fitted
   to one campaign of fifty copies moves the plain rate by fifty; here by one.
3. Metamorphic rates: every transform of tests/metamorphic applied to every dev phish (kept:
   still at its level) and every genuine mail (kept: still clean), per transform.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import random
import re
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "milter"))
sys.path.insert(0, str(ROOT / "tests"))

from otpguard.config import load_config  # noqa: E402
from otpguard.core.model import Envelope, Level  # noqa: E402
from otpguard.core.parse import parse_message  # noqa: E402
from otpguard.engine import Engine  # noqa: E402

TRAFFIC = ("easy_ham", "easy_ham_2", "hard_ham", "spam", "spam_2")
RANK = {Level.CLEAN: 0, Level.SUSPICIOUS: 1, Level.PHISH: 2}
SAME_TEMPLATE = 0.5  # Jaccard similarity of word shingles above which two lures share a template


def shingles(text: str, n: int = 4) -> frozenset[str]:
    """Word (or, for CJK, character) n-grams of a lure's text with digits, URLs and spaces folded."""
    text = re.sub(r"https?://\S+", " ", text.lower())
    text = re.sub(r"\d+", "0", text)
    words = re.findall(r"[a-z0]+|[^\sa-z0\W]", text)
    return frozenset(" ".join(words[i:i + n]) for i in range(max(1, len(words) - n + 1)))


def templates(texts: dict[str, str]) -> list[list[str]]:
    """Groups of files whose texts are near-duplicates (single linkage over Jaccard >= SAME_TEMPLATE)."""
    names = sorted(texts)
    sets = {n: shingles(texts[n]) for n in names}
    parent = {n: n for n in names}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, a in enumerate(names):
        for b in names[i + 1:]:
            sa, sb = sets[a], sets[b]
            if sa and sb and len(sa & sb) / len(sa | sb) >= SAME_TEMPLATE:
                parent[find(a)] = find(b)
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(find(n), []).append(n)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))


def pct(k: float, n: int) -> str:
    return f"{k:g} ({100 * k / n:.1f}%)" if n else "0"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--config", default=str(ROOT / "conf" / "otpguard.toml"))
    ap.add_argument("--show", action="store_true", help="list misses and false positives")
    ap.add_argument("--no-metamorphic", action="store_true", help="skip the transforms (the slow part)")
    args = ap.parse_args()
    cfg = load_config(args.config)
    engine = Engine(replace(cfg, auth=replace(cfg.auth, verify=False)), verify=False)

    groups: dict[str, list[Path]] = {}
    with (args.corpus / "MANIFEST.tsv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            groups.setdefault(row["label"], []).append(args.corpus / row["file"])
    for folder in TRAFFIC:
        d = args.corpus / "traffic" / folder
        if d.is_dir():
            groups[f"traffic/{folder}"] = sorted(p for p in d.iterdir() if p.is_file())

    print(f"Evaluation on {args.corpus} ({datetime.date.today().isoformat()}, DNS off, shipped weights)\n")
    print("| label | messages | tagged (suspicious or phish) | at phish level |")
    print("|---|---:|---:|---:|")
    notes = []
    levels: dict[Path, Level] = {}
    for label, files in groups.items():
        tagged = phish = 0
        for path in files:
            d = engine.analyse(path.read_bytes(), Envelope())
            levels[path] = d.level
            flagged = d.level is not Level.CLEAN
            tagged += flagged
            phish += d.level is Level.PHISH
            positive = label == "phish"
            if args.show and (flagged != positive) and not label.startswith("traffic/spam"):
                notes.append(f"{path}: {d.level.value} {d.score} {[h.symbol for h in d.hits if h.score]}")
        print(f"| {label} | {len(files)} | {pct(tagged, len(files))} | {pct(phish, len(files))} |")

    phish_files = groups.get("phish", [])
    if phish_files:
        texts = {}
        for p in phish_files:
            m = parse_message(p.read_bytes(), cfg.analysis)
            texts[str(p)] = f"{m.subject}\n{m.text[:5000]}"
        tg = templates(texts)
        tagged = sum(sum(levels[Path(f)] is not Level.CLEAN for f in g) / len(g) for g in tg)
        phish = sum(sum(levels[Path(f)] is Level.PHISH for f in g) / len(g) for g in tg)
        print(f"| phish, template-balanced ({len(tg)} templates, each weighs the same) | {len(tg)} | "
              f"{round(tagged, 2)} ({100 * tagged / len(tg):.1f}%) | {round(phish, 2)} ({100 * phish / len(tg):.1f}%) |")
        print(f"\nTemplates: sizes {[len(g) for g in tg]}")
    for line in notes:
        print(line)

    if not args.no_metamorphic:
        metamorphic(engine, groups, levels)
    return 0


def metamorphic(engine: Engine, groups: dict[str, list[Path]], levels: dict[Path, Level]) -> None:
    from metamorphic import load_all

    transforms = load_all()
    labelled = {"phish": groups.get("phish", []), "genuine": groups.get("legit", []) + groups.get("hardneg", [])}
    print("\nMetamorphic rates: each transform on every dev mail it applies to "
          "(phish kept = still at its level; genuine kept = still clean)\n")
    print("| transform | phish changed | phish kept | genuine changed | genuine kept |")
    print("|---|---:|---:|---:|---:|")
    totals = {"phish": [0, 0], "genuine": [0, 0]}
    for name in sorted(transforms):
        t = transforms[name]
        cells = []
        for label in ("phish", "genuine"):
            if label not in t.applies_to:
                cells += ["-", "-"]
                continue
            changed = kept = 0
            for path in labelled[label]:
                new = t.rewrite(path.read_bytes(), random.Random(f"{name}/{path.name}"))
                if new is None:
                    continue
                changed += 1
                after = engine.analyse(new, Envelope()).level
                before = levels[path]
                ok = (after is Level.CLEAN or before is not Level.CLEAN) if label == "genuine" \
                    else RANK[after] >= RANK[before]
                kept += ok
            totals[label][0] += changed
            totals[label][1] += kept
            cells += [str(changed), pct(kept, changed)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    p, g = totals["phish"], totals["genuine"]
    print(f"| all | {p[0]} | {pct(p[1], p[0])} | {g[0]} | {pct(g[1], g[0])} |")


if __name__ == "__main__":
    sys.exit(main())
