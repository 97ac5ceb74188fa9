"""Milter transport benchmark: Postfix alone vs otpguard on unix, inet+TCP_NODELAY, inet without.

Every message is tagged (clean = ["tag"]), so each end of message carries header changes.
The milters log one line per message at info level, as shipped.

Starts a private Postfix (tests/support/postfix.py) with one loopback listener per variant and
one `otpguard serve` per milter variant, pushes N messages per variant with smtp-source
(512-byte messages, discard transport: nothing is delivered or relayed), waits until the
maillog shows every message discarded, and prints msgs/s and the ratio to Postfix alone,
all measured in one run. Shared helpers are in bench/common.py; bench/postfix.py is the
throughput benchmark with the real engine, the shipped actions and corpus mail.

    .venv/bin/python bench/milter_inet.py [-n 2000] [-s 1,10] [--engine null|real]

`--engine null` answers every message with a fixed clean Decision: it measures the milter
transport (what design.md's figures describe); `real` runs the analysis core as shipped.
Needs root (private Postfix) and smtp-source (ships with postfix).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (PY, Completions, OtpguardServer, PostfixInstance, cannot_run, free_port,  # noqa: E402
                    milter_config as shipped_config, shared_tmpdir, smtp_source, stop_all)

# Starts `otpguard serve` with a stand-in engine when asked (benchmark only). With
# OTPGUARD_BENCH_POOL_FROM=1 in its environment, milter.workers = 1 analyses in a pool of one
# worker process (the hand-off's cost, bench/milter_load.py) instead of in the milter process.
BOOT = """
import os, sys
from otpguard.mta import pool, serve
if os.environ.get("OTPGUARD_BENCH_POOL_FROM"):
    pool.POOL_FROM = int(os.environ["OTPGUARD_BENCH_POOL_FROM"])
if sys.argv[1] == "null":
    from otpguard.core.model import Decision, Level
    class NullEngine:
        def __init__(self, *args, **kwargs): pass  # whatever serve._build_engine passes
        def analyse(self, raw, envelope, **kwargs): return Decision(level=Level.CLEAN, score=0.0)
        def too_large(self, size): return Decision(level=Level.CLEAN, score=0.0, analysed=False)
        def own_results_header(self, decision): return None
    serve._build_engine = NullEngine
if sys.argv[2] == "nodata":  # the naive milter: no data() callback, so DATA is not answered
    import Milter
    from otpguard.mta import adapter
    def data(self):
        return Milter.CONTINUE
    adapter.OtpGuardMilter.data = Milter.nocallback(data)
import argparse
p = argparse.ArgumentParser(); serve.add_arguments(p)
sys.exit(serve.run(p.parse_args(sys.argv[3:])))
"""


def milter_config(path: Path, socket_spec: str, nodelay: bool) -> Path:
    """The shipped config (no DNS, no metrics), every message tagged: at end of message the
    milter then writes several packets in a row (two header additions and the reply), which
    is where Nagle bites."""
    return shipped_config(path, socket_spec, nodelay=nodelay, changes={"clean = []": 'clean = ["tag"]'})


def drained_rate(done: Completions, port: int, messages: int, sessions: int) -> float:
    """msgs/s from smtp-source's start until the maillog shows every message discarded."""
    done.mark()
    t0 = time.monotonic()
    smtp_source(port, messages, sessions)
    return messages / (done.wait(messages, timeout=600) - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--messages", type=int, default=2000)
    ap.add_argument("-s", "--sessions", type=lambda v: [int(x) for x in v.split(",")], default=[1, 10],
                    help="comma-separated parallel SMTP session counts (default 1,10)")
    ap.add_argument("--engine", choices=("null", "real"), default="null")
    args = ap.parse_args()
    if why := cannot_run():
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    work = shared_tmpdir("otpguard-bench-")
    variants = {  # listener -> (milter spec for Postfix, tcp_nodelay, data() answered)
        "unix": (f"unix:{work}/sock/otpguard.sock", True, True),
        "inet_nodelay": (f"inet:127.0.0.1:{free_port()}", True, True),
        "inet_nagle": (f"inet:127.0.0.1:{free_port()}", False, True),
        "inet_nodelay_nodata": (f"inet:127.0.0.1:{free_port()}", True, False),
        "inet_nagle_nodata": (f"inet:127.0.0.1:{free_port()}", False, False),
    }
    servers: list[OtpguardServer] = []
    pf = PostfixInstance.create({"none": "", **{k: v[0] for k, v in variants.items()}},
                                root=work / "postfix")
    try:
        (work / "sock").mkdir(mode=0o755)
        for name, (spec, nodelay, data) in variants.items():
            cfg = milter_config(work / f"{name}.toml", spec, nodelay)
            servers.append(OtpguardServer(config=cfg, socket=spec, log=work / f"{name}.log",
                                          command=(PY, "-c", BOOT, args.engine, "data" if data else "nodata")).start())
        pf.start()
        done = Completions(pf)
        for name in ("none", *variants):  # warm up every process involved
            drained_rate(done, pf.listeners[name], 50, 5)
        labels = {"none": "Postfix alone (no milter)",
                  "unix": "otpguard, unix socket",
                  "inet_nodelay": "otpguard, inet, TCP_NODELAY (shipped)",
                  "inet_nagle": "otpguard, inet, no TCP_NODELAY",
                  "inet_nodelay_nodata": "inet, TCP_NODELAY, no data() callback",
                  "inet_nagle_nodata": "inet, no TCP_NODELAY, no data() (naive)"}
        print(f"512-byte messages, engine={args.engine}, {os.cpu_count()} CPUs, every message tagged")
        for sessions in args.sessions:
            # One session shows per-message latency (a 40 ms stall caps it at ~25 msgs/s);
            # fewer messages keep the slow variants short.
            n = args.messages if sessions > 1 else min(args.messages, 300)
            results = {}
            for name in ("none", *variants):
                results[name] = drained_rate(done, pf.listeners[name], n, sessions)
            base = results["none"]
            print(f"{sessions} session(s), {n} messages per variant:")
            for name, rate in results.items():
                print(f"  {labels[name]:<42} {rate:8.1f} msgs/s  ratio {rate / base:5.2f}")
            print(f"  TCP_NODELAY on/off over inet: {results['inet_nodelay'] / results['inet_nagle']:.1f}x; "
                  f"shipped inet vs naive inet: {results['inet_nodelay'] / results['inet_nagle_nodata']:.1f}x")
        return 0
    finally:
        pf.cleanup()
        stop_all(servers)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
