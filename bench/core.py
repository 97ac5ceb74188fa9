#!/usr/bin/env python3
"""`make bench` (core part): parse + checks + score over the corpus in one process, no DNS.

Prints messages/s and p50/p99 latency, and the ratio against a baseline measured in the same
run: Python's own email parser reading the same bytes (the least any analysis must do).
"""
from __future__ import annotations

import argparse
import email
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "milter"))

from otpguard.config import load_config  # noqa: E402
from otpguard.engine import Engine  # noqa: E402
from otpguard.core.model import Envelope  # noqa: E402


def corpus_files(root: Path) -> list[Path]:
    out = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.endswith((".tsv", ".md")):
                continue
            out.append(Path(dirpath) / name)
    return sorted(out)


def timed(fn, items) -> tuple[float, list[float]]:
    lat = []
    start = time.perf_counter()
    for raw in items:
        t = time.perf_counter()
        fn(raw)
        lat.append(time.perf_counter() - t)
    return time.perf_counter() - start, lat


def q(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] if len(values) > 1 else values[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "conf" / "otpguard.toml"))
    args = ap.parse_args()
    cfg = load_config(args.config)
    engine = Engine(replace(cfg, auth=replace(cfg.auth, verify=False)), verify=False)
    items = [p.read_bytes() for p in corpus_files(args.corpus)]
    env = Envelope()
    engine.analyse(items[0], env)  # warm caches (PSL, confusables table, compiled patterns)

    base_total, base_lat = timed(email.message_from_bytes, items)
    total, lat = timed(lambda raw: engine.analyse(raw, env), items)
    n = len(items)
    print(f"core benchmark: {n} messages ({sum(map(len, items)) / 1e6:.1f} MB), one process, one core")
    print(f"  baseline email.message_from_bytes: {n / base_total:8.0f} msgs/s  p50 {q(base_lat, 50) * 1e3:.2f} ms"
          f"  p99 {q(base_lat, 99) * 1e3:.2f} ms")
    print(f"  otpguard analyse (no DNS):         {n / total:8.0f} msgs/s  p50 {q(lat, 50) * 1e3:.2f} ms"
          f"  p99 {q(lat, 99) * 1e3:.2f} ms  max {max(lat) * 1e3:.1f} ms")
    print(f"  ratio otpguard / baseline throughput: {(n / total) / (n / base_total):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
