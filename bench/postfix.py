"""Throughput through a real private Postfix on loopback: no milter vs otpguard (unix, inet).

One Postfix instance (tests/support/postfix.py) gets one loopback listener per variant:
  none          no milter (-o smtpd_milters=): the baseline, measured in the same run
  unix          otpguard on a unix socket (milter.workers = "auto" as shipped: one analysis
                worker process per usable CPU)
  unix_w1       otpguard on a unix socket with milter.workers = 1 (analysis in the milter
                process): "unix" must be no slower (issue 17)
  inet_nodelay  otpguard on inet with TCP_NODELAY (shipped default)
  inet_nagle    otpguard on inet with milter.tcp_nodelay = false
  unix_anycpu   otpguard on a unix socket with milter.cpu_affinity = "none" (threads on any
                CPU) instead of the shipped "auto" (one CPU)
  bare          bench/bare_milter.py on a unix socket: a pymilter milter that does nothing, the
                floor under any Python milter on this machine, measured in the same run
  null          otpguard serve on a unix socket with an engine that answers "clean" at once:
                everything but the analysis (collecting, hand-off, log line, metrics), so
                the ratio any analysis at all can reach here
Each otpguard is `otpguard serve` with the real engine and the shipped config, except
auth.verify = false (no DNS here) and /metrics on a free loopback port. The milter CPU
figures cover all of a milter's processes (its zygote and analysis workers too).

Two load generators: smtp-source (512-byte messages) and a concurrent smtplib sender of
real corpus mail (phish, legit, hardneg, traffic ham and spam, mixed in a fixed order).
Mail goes to the discard transport (otpguard may quarantine phish to the hold queue):
nothing is delivered or relayed. The clock runs from the first connection until the
maillog shows every message finished (discarded or held), so the queue has drained.
Variants run in rotating order, each several times; the figure is the median.

    .venv/bin/python bench/postfix.py [--rounds 5] [-m 2000] [-s 10] [--corpus DIR]
                                      [--corpus-messages 1200] [--corpus-sessions 16]
                                      [--only corpus] [--variants unix,unix_w1]
Needs root (private Postfix) and smtp-source (ships with postfix).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (DEFAULT_CORPUS, PY, Completions, OtpguardServer, PostfixInstance, cannot_run,  # noqa: E402
                    children_cpu, free_port, load_messages, machine_busy, median, milter_config, own_cpu, postfix_cpu,
                    scrape_messages, send_concurrent, shared_tmpdir, smtp_source, stop_all, tree_cpu)
from milter_inet import BOOT  # noqa: E402  (otpguard serve with a stand-in engine)

VARIANTS = ("none", "unix", "inet_nodelay", "inet_nagle", "unix_anycpu", "unix_w1", "bare", "null")
LABELS = {"none": "Postfix alone (no milter)",
          "unix": "otpguard, unix socket",
          "inet_nodelay": "otpguard, inet, TCP_NODELAY (shipped)",
          "inet_nagle": "otpguard, inet, tcp_nodelay = false",
          "unix_anycpu": "otpguard, unix, cpu_affinity = none",
          "unix_w1": "otpguard, unix, workers = 1",
          "bare": "pymilter doing nothing, unix socket (the floor)",
          "null": "otpguard, unix, engine answering at once (no analysis)"}
TARGETS = {"unix": 0.60, "inet_nodelay": 0.55}


@dataclass(slots=True)
class Series:
    """Runs of one variant under one generator."""

    rates: list[float] = field(default_factory=list)       # msgs/s until the queue drained
    accept_rates: list[float] = field(default_factory=list)  # msgs/s until the client finished
    cpu_postfix: list[float] = field(default_factory=list)   # CPU ms per message, per run
    cpu_milter: list[float] = field(default_factory=list)
    cpu_client: list[float] = field(default_factory=list)
    holds: int = 0


@dataclass(slots=True)
class Noise:
    """CPU that processes other than ours used during the timed runs (a shared VM has neighbours)."""

    other_cpu: float = 0.0
    wall: float = 0.0

    def share(self) -> float:
        """Fraction of the machine's CPUs that others used while we measured."""
        return self.other_cpu / (self.wall * (os.cpu_count() or 1)) if self.wall else 0.0


def run_once(pf: PostfixInstance, done: Completions, send: Callable[[int], int], port: int,
             milter_pid: int | None, series: Series, noise: Noise, timeout: float) -> int:
    """One timed run, appended to series; returns how many messages were held."""
    done.mark()
    busy0 = machine_busy()
    cpu0 = (postfix_cpu(pf), tree_cpu(milter_pid) if milter_pid else 0.0, children_cpu() + own_cpu())
    t0 = time.monotonic()
    expected = send(port)
    t_sent = time.monotonic()
    t_done = done.wait(expected, timeout)
    cpu1 = (postfix_cpu(pf), tree_cpu(milter_pid) if milter_pid else 0.0, children_cpu() + own_cpu())
    noise.other_cpu += max(0.0, machine_busy() - busy0 - sum(cpu1) + sum(cpu0))
    noise.wall += t_done - t0
    holds = done.holds
    if holds:  # quarantined phish: empty the hold queue so it never grows across runs
        subprocess.run(["postsuper", "-c", str(pf.confdir), "-d", "ALL", "hold"], capture_output=True, timeout=30)
    series.rates.append(expected / (t_done - t0))
    series.accept_rates.append(expected / (t_sent - t0))
    for values, before, after in zip((series.cpu_postfix, series.cpu_milter, series.cpu_client), cpu0, cpu1):
        values.append((after - before) * 1000 / expected)
    series.holds += holds
    return holds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="runs per variant and generator (median reported)")
    ap.add_argument("-m", "--messages", type=int, default=2000, help="smtp-source messages per run")
    ap.add_argument("-s", "--sessions", type=int, default=10, help="smtp-source parallel sessions")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--corpus-messages", type=int, default=1200, help="corpus messages per run")
    ap.add_argument("--corpus-sessions", type=int, default=16, help="concurrent smtplib sessions")
    ap.add_argument("--per-session", type=int, default=10, help="corpus messages per SMTP session")
    ap.add_argument("--only", choices=("smtp-source", "corpus"), help="run one generator only")
    ap.add_argument("--variants", type=lambda v: [x for x in v.split(",") if x],
                    help="run these variants only, comma-separated (the baseline 'none' always runs): "
                         "e.g. unix,unix_w1 for more rounds of the workers comparison in the same time")
    args = ap.parse_args()
    variants = list(VARIANTS)
    if args.variants:
        if unknown := set(args.variants) - set(VARIANTS):
            print(f"unknown variants: {', '.join(sorted(unknown))} (known: {', '.join(VARIANTS)})", file=sys.stderr)
            return 2
        variants = ["none", *(v for v in VARIANTS[1:] if v in args.variants)]
    if why := cannot_run():
        print(f"postfix benchmark cannot run: {why}", file=sys.stderr)
        return 2

    work = shared_tmpdir("otpguard-bench-pf-")
    (work / "sock").mkdir(mode=0o755)
    specs = {"unix": (f"unix:{work}/sock/otpguard.sock", True),
             "inet_nodelay": (f"inet:127.0.0.1:{free_port()}", True),
             "inet_nagle": (f"inet:127.0.0.1:{free_port()}", False),
             "unix_anycpu": (f"unix:{work}/sock/anycpu.sock", True),
             "unix_w1": (f"unix:{work}/sock/w1.sock", True)}
    null_spec = f"unix:{work}/sock/null.sock"
    metrics_ports = {name: free_port() for name in (*specs, "null")}
    bare_spec = f"unix:{work}/sock/bare.sock"
    servers: dict[str, OtpguardServer] = {}
    pf = PostfixInstance.create({"none": "", **{k: v[0] for k, v in specs.items()}, "bare": bare_spec,
                                 "null": null_spec}, root=work / "postfix")
    try:
        for name, (spec, nodelay) in specs.items():
            change = {"unix_anycpu": {'cpu_affinity = "auto"': 'cpu_affinity = "none"'},
                      "unix_w1": {'workers = "auto"': "workers = 1"}}.get(name)
            cfg = milter_config(work / f"{name}.toml", spec, nodelay=nodelay, metrics_port=metrics_ports[name],
                                changes=change)
            if name not in variants:
                continue  # its config is still written: bare_milter reads unix.toml
            servers[name] = OtpguardServer(config=cfg, socket=spec, log=work / f"{name}.log").start()
        if "bare" in variants:
            servers["bare"] = OtpguardServer(config=work / "unix.toml", socket=bare_spec, log=work / "bare.log",
                                             command=(PY, str(Path(__file__).resolve().parent / "bare_milter.py"))).start()
        if "null" in variants:
            cfg = milter_config(work / "null.toml", null_spec, metrics_port=metrics_ports["null"])
            servers["null"] = OtpguardServer(config=cfg, socket=null_spec, log=work / "null.log",
                                             command=(PY, "-c", BOOT, "null", "data"),
                                             env={"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "milter")}
                                             ).start()
        pf.start()
        corpus = load_messages(args.corpus, args.corpus_messages)
        done = Completions(pf)

        def by_smtp_source(port: int) -> int:
            smtp_source(port, args.messages, args.sessions)
            return args.messages

        def by_corpus(port: int) -> int:
            res = send_concurrent(port, corpus, sessions=args.corpus_sessions, per_session=args.per_session)
            if res.failed:
                raise RuntimeError(f"{res.failed} corpus messages refused: {res.errors[:3]}")
            return res.accepted

        generators: dict[str, tuple[Callable[[int], int], str]] = {
            "smtp-source": (by_smtp_source, f"smtp-source -s {args.sessions} -m {args.messages} -l 512"),
            "corpus": (by_corpus, f"smtplib, {args.corpus_sessions} sessions x {args.per_session} msgs, "
                                  f"{len(corpus)} corpus messages ({sum(map(len, corpus)) / len(corpus) / 1024:.1f} KiB avg)"),
        }
        if args.only:
            generators = {args.only: generators[args.only]}

        # Warm-up: every process involved (smtpd, cleanup, milter threads, the engine's caches).
        for name in variants:
            done.mark()
            smtp_source(pf.listeners[name], 50, 5)
            n = send_concurrent(pf.listeners[name], corpus[:100], sessions=10, per_session=10).accepted
            done.wait(50 + n)
        subprocess.run(["postsuper", "-c", str(pf.confdir), "-d", "ALL"], capture_output=True, timeout=30)
        metrics_ports = {name: port for name, port in metrics_ports.items() if name in servers}
        before = {name: scrape_messages(port)[0] for name, port in metrics_ports.items()}

        results: dict[str, dict[str, Series]] = {g: {v: Series() for v in variants} for g in generators}
        expected_milter = 0
        noise = Noise()
        for gen, (send, _) in generators.items():
            for rnd in range(args.rounds):
                # Rotate the order so a noisy neighbour does not always hit the same variant.
                order = variants[rnd % len(variants):] + variants[:rnd % len(variants)]
                for name in order:
                    s = results[gen][name]
                    pid = servers[name].pid if name in servers else None
                    holds = run_once(pf, done, send, pf.listeners[name], pid, s, noise, timeout=300)
                    print(f"  [{gen} round {rnd + 1}] {name:<13} {s.rates[-1]:7.1f} msgs/s "
                          f"(client done at {s.accept_rates[-1]:7.1f}); CPU ms/msg: postfix {s.cpu_postfix[-1]:.2f}"
                          f" otpguard {s.cpu_milter[-1]:.2f} client {s.cpu_client[-1]:.2f}"
                          f"{f'; {holds} held' if holds else ''}", flush=True)
            expected_milter += args.rounds * (args.messages if gen == "smtp-source" else len(corpus))

        # The milters must have analysed every message, without errors, or the figures lie.
        checks = []
        for name, port in metrics_ports.items():
            total, errors = scrape_messages(port)
            checks.append(f"{name}: {total - before[name]:.0f} analysed, {errors:.0f} errors")
            if total - before[name] != expected_milter or errors:
                print(f"WARNING: otpguard {name} analysed {total - before[name]:.0f} of {expected_milter} "
                      f"messages with {errors:.0f} errors", file=sys.stderr)

        print()
        print(f"Postfix throughput, {os.cpu_count()} CPUs, median of {args.rounds} runs per variant, "
              "clock stopped when the queue had drained")
        print(f"otpguard sanity (/metrics): {'; '.join(checks)}")
        print(f"other processes on this machine used {noise.share() * 100:.0f}% of its CPUs during the timed runs")
        for gen, (_, desc) in generators.items():
            base = median(results[gen]["none"].rates)
            print(f"\n{gen}: {desc}")
            print("| variant | msgs/s (median) | runs | ratio to no milter | target "
                  "| CPU ms/msg: Postfix | otpguard | client |")
            print("|---|---:|---|---:|---|---:|---:|---:|")
            for name in variants:
                s = results[gen][name]
                rate = median(s.rates)
                ratio = rate / base
                target = TARGETS.get(name)
                verdict = "" if target is None else f">= {target:.2f} {'met' if ratio >= target else 'NOT met'}"
                runs = " ".join(f"{r:.0f}" for r in s.rates)
                if name != "none":  # each round's ratio: the same round's baseline, minutes apart at most
                    runs += " (ratios " + " ".join(
                        f"{r / b:.2f}" for r, b in zip(s.rates, results[gen]["none"].rates)) + ")"
                print(f"| {LABELS[name]} | {rate:.1f} | {runs} | {ratio:.2f} | {verdict} "
                      f"| {median(s.cpu_postfix):.2f} | {median(s.cpu_milter):.2f} | {median(s.cpu_client):.2f} |")
            if {"inet_nagle", "inet_nodelay"} <= set(variants):
                nagle = median(results[gen]["inet_nagle"].rates)
                print(f"TCP_NODELAY on/off over inet: {median(results[gen]['inet_nodelay'].rates) / nagle:.2f}x")
            # Throughput here is CPU-bound: the CPU a message costs in all, without and with the
            # milter, bounds the ratio whatever the neighbours do to the wall clock.
            cpu = {n: median(results[gen][n].cpu_postfix) + median(results[gen][n].cpu_milter)
                   + median(results[gen][n].cpu_client) for n in variants}
            print("CPU-bound ratio estimate (CPU per message without milter / with it): "
                  + ", ".join(f"{n} {cpu['none'] / cpu[n]:.2f}" for n in variants[1:]))
            if {"unix", "unix_w1"} <= set(variants):
                # Both figures: the ratio of the medians, and the median of each round's own ratio
                # (the two ran minutes apart at most, so a busy spell of the host hits both).
                shipped, w1 = results[gen]["unix"].rates, results[gen]["unix_w1"].rates
                rounds = [a / b for a, b in zip(shipped, w1)]
                print(f"workers as shipped against workers = 1 (unix): {median(shipped) / median(w1):.2f}x, "
                      f"by rounds {median(rounds):.2f}x (per round: " + " ".join(f"{r:.2f}" for r in rounds) + ")")
            if "bare" in variants:
                bare = median(results[gen]["bare"].rates)
                print("otpguard against the do-nothing pymilter milter: "
                      + ", ".join(f"{n} {median(results[gen][n].rates) / bare:.2f}" for n in specs if n in variants))
        return 0
    finally:
        pf.cleanup()
        stop_all(servers.values())
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
