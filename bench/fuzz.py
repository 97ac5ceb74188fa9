#!/usr/bin/env python3
"""`make fuzz`: mutation fuzzing of parse + analysis on corpus mail (default 100,000 cases).

Each case takes a corpus message and applies one or more hostile edits: flipped bytes,
truncation, wrong or missing boundaries, invalid charsets, NUL bytes, 100k-character lines,
10k headers, deep MIME nesting, 100k links, huge base64 parts. The core must never raise and
never exceed the time budget. Prints the counts; exits 1 on any exception or overrun.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "milter"))

from otpguard.config import load_config  # noqa: E402
from otpguard.engine import Engine  # noqa: E402
from otpguard.core.model import Envelope  # noqa: E402


def flip(rng, raw):
    b = bytearray(raw)
    for _ in range(rng.randint(1, 64)):
        b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b)


def truncate(rng, raw):
    return raw[: rng.randrange(len(raw))]


def boundaries(rng, raw):
    return raw.replace(b"boundary=", rng.choice([b"boundary=x", b"boundary=", b"boundary=\"\"", b"bound=\""]))


def charsets(rng, raw):
    return raw.replace(b"charset=", b"charset=" + rng.choice([b"x-bogus-", b"utf-7", b"iso-2022-jp-99", b"\xff\xfe"]), 3)


def nuls(rng, raw):
    i = rng.randrange(len(raw))
    return raw[:i] + b"\x00" * rng.randint(1, 5000) + raw[i:]


def long_line(rng, raw):
    i = raw.find(b"\n\n") + 2 if b"\n\n" in raw else len(raw) // 2
    return raw[:i] + b"A" * 100_000 + raw[i:]


def many_headers(rng, raw):
    return b"X-Fuzz: 1\r\n" * 10_000 + raw


def deep_mime(rng, raw):
    head = b"".join(f"Content-Type: multipart/mixed; boundary=n{i}\r\n\r\n--n{i}\r\n".encode() for i in range(1000))
    return b"From: fuzz@x.example\r\n" + head + raw


def many_links(rng, raw):
    return raw + b"\r\n<html><body>" + b"<a href='http://amaz0n.example/x'>www.amazon.com</a>" * 100_000 + b"</body></html>"


def huge_base64(rng, raw):
    return (b"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\nContent-Type: application/pdf\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + b"JVBERi0xLjQK" * 500_000 + b"\r\n--z--\r\n")


MUTATORS = [flip, truncate, boundaries, charsets, nuls, long_line, many_headers, deep_mime, many_links, huge_base64]
HEAVY = {long_line, many_headers, deep_mime, many_links, huge_base64}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "conf" / "otpguard.toml"))
    args = ap.parse_args()
    start = time.perf_counter()
    shares = [args.cases // args.jobs + (i < args.cases % args.jobs) for i in range(args.jobs)]
    with multiprocessing.Pool(args.jobs) as pool:
        results = pool.starmap(run_share, [(args.corpus, args.config, n, args.seed + i) for i, n in enumerate(shares)])
    total = time.perf_counter() - start
    errors = sum(r[0] for r in results)
    overruns = sum(r[1] for r in results)
    worst = max(r[2] for r in results)
    budget = load_config(args.config).analysis.time_budget_seconds
    print(f"fuzz: {args.cases} cases in {total:.0f}s on {args.jobs} processes ({args.cases / total:.0f}/s): "
          f"{errors} exceptions, {overruns} over the {budget:.0f}s budget, slowest case {worst:.2f}s")
    return 1 if errors or overruns else 0


def run_share(corpus: Path, config: str, cases: int, seed: int) -> tuple[int, int, float]:
    """One worker's cases: (exceptions, budget overruns, slowest seconds)."""
    cfg = load_config(config)
    engine = Engine(replace(cfg, auth=replace(cfg.auth, verify=False)), verify=False)
    budget = cfg.analysis.time_budget_seconds
    files = []
    for sub in ("phish", "legit", "hardneg", "traffic/spam_2", "traffic/hard_ham"):
        d = corpus / sub
        if d.is_dir():
            files += sorted(p for p in d.iterdir() if p.is_file() and not p.name.endswith((".tsv", ".md")))
    seeds = [p.read_bytes() for p in files]
    rng = random.Random(seed)
    errors = overruns = 0
    worst = 0.0
    for case in range(cases):
        raw = rng.choice(seeds) or b"x"
        # Heavy mutations are ~1% of cases so that the run stays a few minutes long.
        mutators = [m for m in MUTATORS if m not in HEAVY] if rng.random() > 0.01 else [rng.choice(sorted(HEAVY, key=lambda f: f.__name__))]
        for m in rng.sample(mutators, k=min(len(mutators), rng.randint(1, 3))):
            raw = m(rng, raw) or b"x"
        t = time.perf_counter()
        try:
            engine.analyse(raw, Envelope())
        except Exception:  # noqa: BLE001 - counting is the point
            errors += 1
            if errors <= 5:
                traceback.print_exc()
        took = time.perf_counter() - t
        worst = max(worst, took)
        overruns += took > budget
        if (case + 1) % 10_000 == 0:
            print(f"  worker {seed}: {case + 1} cases, {errors} exceptions, {overruns} over budget, "
                  f"worst {worst:.2f}s", flush=True)
    return errors, overruns, worst


if __name__ == "__main__":
    sys.exit(main())
