#!/usr/bin/env python3
"""The core benchmark of two builds in the same run: this checkout against a git revision.

Each build's own bench/core.py runs in its own process, alternating (A B A B ...), so both see
the same machine at nearly the same time; the report gives each build's median msgs/s and the
ratio. Used for "the core must stay within 20% of its speed before each issue":

    .venv/bin/python bench/core_ab.py --base <commit before the issue> [--rounds 3] CORPUS
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_RATE = re.compile(r"otpguard analyse \(no DNS\):\s+(\d+) msgs/s")


def run_core(tree: Path, corpus: Path) -> float:
    out = subprocess.run([sys.executable, str(tree / "bench" / "core.py"), "--config",
                          str(tree / "conf" / "otpguard.toml"), str(corpus)],
                         capture_output=True, text=True, check=True, cwd=tree).stdout
    m = _RATE.search(out)
    if m is None:
        raise SystemExit(f"no rate in the output of {tree}/bench/core.py:\n{out}")
    return float(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--base", required=True, help="git revision to compare against (e.g. the commit before an issue)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="otpguard-base-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base],
                       check=True, capture_output=True)
        try:
            rates: dict[str, list[float]] = {"base": [], "this": []}
            for i in range(args.rounds):
                for name, tree in (("base", base), ("this", ROOT)):
                    rates[name].append(run_core(tree, args.corpus.resolve()))
                    print(f"round {i + 1}: {name:4} {rates[name][-1]:6.0f} msgs/s", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)
    b, t = statistics.median(rates["base"]), statistics.median(rates["this"])
    # Each round's own ratio as well: the host's load drifts over minutes, and a round's two
    # runs see nearly the same host (a ratio of medians mixes rounds that did not).
    paired = [tb / bb for bb, tb in zip(rates["base"], rates["this"])]
    print(f"per-round ratios: {' '.join(f'{r:.2f}' for r in paired)}")
    print(f"core A/B over {args.rounds} rounds: base {args.base} {b:.0f} msgs/s, this build {t:.0f} msgs/s, "
          f"ratio this/base {t / b:.2f}; median of the rounds' ratios {statistics.median(paired):.2f}; "
          f"best against best {max(rates['this']) / max(rates['base']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
