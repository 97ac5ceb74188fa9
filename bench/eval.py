#!/usr/bin/env python3
"""`make eval`: detection on the development corpus, per label, as a Markdown table."""
from __future__ import annotations

import argparse
import csv
import datetime
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "milter"))

from otpguard.config import load_config  # noqa: E402
from otpguard.engine import Engine  # noqa: E402
from otpguard.core.model import Envelope, Level  # noqa: E402

TRAFFIC = ("easy_ham", "easy_ham_2", "hard_ham", "spam", "spam_2")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "conf" / "otpguard.toml"))
    ap.add_argument("--show", action="store_true", help="list misses and false positives")
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
    for label, files in groups.items():
        tagged = phish = 0
        for path in files:
            d = engine.analyse(path.read_bytes(), Envelope())
            flagged = d.level is not Level.CLEAN
            tagged += flagged
            phish += d.level is Level.PHISH
            positive = label == "phish"
            if args.show and (flagged != positive) and label in ("phish", "legit", "hardneg", "traffic/easy_ham",
                                                                  "traffic/easy_ham_2", "traffic/hard_ham"):
                notes.append(f"{path}: {d.level.value} {d.score} {[h.symbol for h in d.hits if h.score]}")
        n = len(files)
        pct = lambda k: f"{k} ({100 * k / n:.1f}%)" if n else "0"  # noqa: E731
        print(f"| {label} | {n} | {pct(tagged)} | {pct(phish)} |")
    for line in notes:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
