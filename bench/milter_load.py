"""Capacity without an MTA: a milter under a Postfix-like load of real corpus mail.

Ten connections, like ten smtpd processes, each carrying messages one after another and
reconnecting every --per-connection messages; each connection speaks milter protocol 6 as
Postfix 3.7 does (tests/support/milterproto.py: Postfix's offer and default macros, the steps
the milter asked to skip skipped, only the replies it did not waive waited for). Each connection
runs in its own client process, so the client's GIL is never the limit. The mail is the
corpus mix of bench/postfix.py (phish, legit, hardneg, traffic ham and spam in a fixed order).

Per variant and run: msgs/s from the first packet to the last end-of-message answer, and the
CPU per message of the milter's whole process tree (the milter, its zygote and workers; rspamd's
main process and workers), of the clients, and of everything else on the machine meanwhile.
Variants run in rotating order, --rounds times each; the figures are medians.

  otpguard-1        workers = 1: analysis on the milter's own threads (unix socket)
  otpguard-pool1    workers = 1 through the worker path: a pool of one worker process, on
                    another CPU than the milter process (cpu_affinity = "auto"). Its CPU per
                    message minus otpguard-1's is the hand-off's cost (target < 0.1 ms), with
                    the cross-CPU wake-ups that using a second core takes
  otpguard-pool1-onecpu  the same with the worker on the milter process's CPU: the hand-off
                    alone
  otpguard-2        workers = 2 (unix socket)
  otpguard-2-inet   workers = 2 on inet loopback, the transport rspamd's proxy uses
  rspamd            rspamd's proxy in milter mode on inet loopback (bench/rspamd.py: Debian's
                    rspamd, default rules, DNS answered NXDOMAIN by a local dnsmasq), if installed
  null-1, null-pool1, null-pool1-onecpu  an engine that answers "clean" at once, in the milter
                    process and behind a pool of one worker: the hand-off without the analysis

Every otpguard runs the shipped config with auth.verify = false (no DNS) and /metrics on.

    .venv/bin/python bench/milter_load.py [--corpus DIR] [-n 3000] [--rounds 3] [--connections 10]
                                          [--per-connection 10] [--variants otpguard-1,otpguard-2,...]
rspamd needs root; the otpguard variants do not.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (DEFAULT_CORPUS, PY, OtpguardServer, free_port, load_messages, machine_busy, median,  # noqa: E402
                    milter_config, process_cpu, scrape_messages, shared_tmpdir, stop_all, tree_cpu)
from milter_inet import BOOT  # noqa: E402  (otpguard serve with a stand-in engine)
from rspamd import RspamdServer, rspamd_available  # noqa: E402
from support.milterproto import Conversation, message_script, split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LABELS = {"otpguard-1": "otpguard, workers = 1 (in the milter process)",
          "otpguard-pool1": "otpguard, one worker process (the worker path)",
          "otpguard-pool1-onecpu": "otpguard, one worker process on the milter's CPU",
          "otpguard-2": "otpguard, workers = 2",
          "otpguard-2-inet": "otpguard, workers = 2, inet",
          "rspamd": "rspamd proxy (milter mode), inet",
          "null-1": "no analysis, in the milter process",
          "null-pool1": "no analysis, one worker process",
          "null-pool1-onecpu": "no analysis, one worker process on the milter's CPU"}
DEFAULT_VARIANTS = tuple(LABELS)
HANDOFF_TARGET_MS = 0.1
TARGET_VS_ONE, TARGET_VS_RSPAMD = 1.3, 1.2

_MESSAGES: list[tuple[list[tuple[bytes, bytes]], bytes]] = []  # set before the clients fork


def _client(conn: "multiprocessing.connection.Connection") -> None:
    """A client process: runs the jobs it is sent, answers (messages, CPU seconds, finals, error)."""
    scripts: dict[tuple[int, int], list[bytes]] = {}
    while True:
        job = conn.recv()
        if job is None:
            return
        address, indices, per_connection = job
        t0 = os.times()
        finals: dict[bytes, int] = {}
        done, error = 0, ""
        try:
            for start in range(0, len(indices), per_connection):
                conv = Conversation(address)
                for i in indices[start:start + per_connection]:
                    key = (conv.protocol, i)
                    if key not in scripts:
                        fields, body = _MESSAGES[i]
                        scripts[key] = message_script(conv.protocol, fields, body)
                    final = conv.send_prepared(scripts[key]).final
                    finals[final] = finals.get(final, 0) + 1
                    done += 1
                conv.close()
        except Exception as exc:  # noqa: BLE001 - reported by the parent
            error = repr(exc)[:200]
        t1 = os.times()
        conn.send((done, (t1.user - t0.user) + (t1.system - t0.system), finals, error))


@dataclass(slots=True)
class Series:
    rates: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # milter tree, ms per message
    main: list[float] = field(default_factory=list)  # of which the milter process itself (otpguard)
    client: list[float] = field(default_factory=list)
    others: list[float] = field(default_factory=list)  # share of the machine used by others
    loads: list[float] = field(default_factory=list)  # 1-minute load average before the run
    finals: dict[bytes, int] = field(default_factory=dict)


class Clients:
    """--connections client processes, each holding one connection at a time."""

    def __init__(self, count: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self.pipes = []
        self.procs = []
        for _ in range(count):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=_client, args=(theirs,), daemon=True)
            proc.start()
            self.pipes.append(ours)
            self.procs.append(proc)

    def run(self, address: str, total: int, per_connection: int, offset: int) -> tuple[float, float, dict, int]:
        """(seconds, client CPU seconds, final answers, messages) for total messages."""
        n = len(self.pipes)
        t0 = time.monotonic()
        for k, pipe in enumerate(self.pipes):
            pipe.send((address, [(offset + i) % len(_MESSAGES) for i in range(k, total, n)], per_connection))
        cpu, finals, done = 0.0, {}, 0
        for pipe in self.pipes:
            count, seconds, answered, error = pipe.recv()
            if error:
                raise RuntimeError(f"a client failed after {count} messages: {error}")
            cpu += seconds
            done += count
            for k, v in answered.items():
                finals[k] = finals.get(k, 0) + v
        return time.monotonic() - t0, cpu, finals, done

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for proc in self.procs:
            proc.join(5)


def start_otpguard(work: Path, name: str, *, workers: int, pool_from: int | None = None, null: bool = False,
                   inet: bool = False, one_cpu: bool = False) -> tuple[OtpguardServer, int]:
    spec = f"inet:127.0.0.1:{free_port()}" if inet else f"unix:{work}/sock/{name}.sock"
    port = free_port()
    changes = {'workers = "auto"': f"workers = {workers}"}
    if one_cpu:  # the milter process and its worker on the CPU "auto" gives the milter process
        changes['cpu_affinity = "auto"'] = f'cpu_affinity = "{max(os.sched_getaffinity(0))}"'
    env = {"PYTHONPATH": str(ROOT / "milter")}
    if pool_from is not None:
        env["OTPGUARD_BENCH_POOL_FROM"] = str(pool_from)
        changes["inline_max_bytes = 2048"] = "inline_max_bytes = 0"  # the hand-off measured on every message
    cfg = milter_config(work / f"{name}.toml", spec, metrics_port=port, changes=changes)
    command = (PY, "-c", BOOT, "null" if null else "real", "data")
    return OtpguardServer(config=cfg, socket=spec, log=work / f"{name}.log", command=command, env=env).start(), port


def main() -> int:
    global _MESSAGES
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("-n", "--messages", type=int, default=3000, help="messages per run")
    ap.add_argument("--corpus-messages", type=int, default=1200, help="distinct corpus messages in the mix")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=10)
    ap.add_argument("--per-connection", type=int, default=10, help="messages per connection before reconnecting")
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    args = ap.parse_args()
    wanted = [v for v in args.variants.split(",") if v]
    unknown = set(wanted) - set(LABELS)
    if unknown:
        ap.error(f"unknown variants: {', '.join(sorted(unknown))}")
    rspamd_missing = rspamd_available() if "rspamd" in wanted else None
    if rspamd_missing:
        print(f"rspamd variant skipped: {rspamd_missing}")
        wanted.remove("rspamd")

    raws = load_messages(args.corpus, args.corpus_messages)
    _MESSAGES = [split(r) for r in raws]
    clients = Clients(args.connections)  # forked now: they share the messages, not our servers
    work = shared_tmpdir("otpguard-bench-load-")
    (work / "sock").mkdir(mode=0o755)
    servers: dict[str, OtpguardServer] = {}
    ports: dict[str, int] = {}
    pids: dict[str, int] = {}
    addresses: dict[str, str] = {}
    dns = rspamd = None
    try:
        plans = {"otpguard-1": dict(workers=1), "otpguard-pool1": dict(workers=1, pool_from=1),
                 "otpguard-pool1-onecpu": dict(workers=1, pool_from=1, one_cpu=True),
                 "otpguard-2": dict(workers=2), "otpguard-2-inet": dict(workers=2, inet=True),
                 "null-1": dict(workers=1, null=True), "null-pool1": dict(workers=1, pool_from=1, null=True),
                 "null-pool1-onecpu": dict(workers=1, pool_from=1, null=True, one_cpu=True)}
        for name in wanted:
            if name in plans:
                servers[name], ports[name] = start_otpguard(work, name, **plans[name])  # type: ignore[arg-type]
                pids[name], addresses[name] = servers[name].pid, servers[name].socket
        if "rspamd" in wanted:
            from support.dnsserver import DnsmasqServer

            (work / "dns").mkdir()
            (work / "rspamd").mkdir()
            dns = DnsmasqServer({}, workdir=work / "dns").start()  # NXDOMAIN for every name
            rspamd = RspamdServer(work / "rspamd", dns_port=dns.port).start()
            pids["rspamd"], addresses["rspamd"] = rspamd.pid, rspamd.milter_address
        # Warm-up: imports, caches, hyperscan databases, worker threads and slots.
        for name in wanted:
            clients.run(addresses[name], min(600, args.messages), args.per_connection, 0)
        before = {name: scrape_messages(port)[0] for name, port in ports.items()}
        results = {name: Series() for name in wanted}
        for rnd in range(args.rounds):
            order = wanted[rnd % len(wanted):] + wanted[:rnd % len(wanted)]
            for name in order:
                s = results[name]
                load = os.getloadavg()[0]
                busy0, cpu0, main0 = machine_busy(), tree_cpu(pids[name]), process_cpu(pids[name])
                seconds, client_cpu, finals, done = clients.run(addresses[name], args.messages, args.per_connection,
                                                                rnd * args.messages)
                cpu1, main1, busy1 = tree_cpu(pids[name]), process_cpu(pids[name]), machine_busy()
                milter_cpu = cpu1 - cpu0
                others = max(0.0, (busy1 - busy0) - milter_cpu - client_cpu) / (seconds * (os.cpu_count() or 1))
                s.rates.append(done / seconds)
                s.cpu.append(milter_cpu * 1000 / done)
                s.main.append((main1 - main0) * 1000 / done)
                s.client.append(client_cpu * 1000 / done)
                s.others.append(others)
                s.loads.append(load)
                for k, v in finals.items():
                    s.finals[k] = s.finals.get(k, 0) + v
                print(f"  [round {rnd + 1}] {name:<16} {s.rates[-1]:7.1f} msgs/s; CPU ms/msg: milter "
                      f"{s.cpu[-1]:.3f} clients {s.client[-1]:.3f}; others used {others * 100:.0f}% of the CPUs; "
                      f"load {load:.2f}", flush=True)
        checks = []
        for name, port in ports.items():
            total, errors = scrape_messages(port)
            analysed = total - before[name]
            checks.append(f"{name}: {analysed:.0f} counted, {errors:.0f} errors")
            if analysed != args.rounds * args.messages or errors:
                print(f"WARNING: {name} counted {analysed:.0f} of {args.rounds * args.messages} with {errors:.0f} "
                      "errors", file=sys.stderr)
        report(args, results, raws, checks)
        return 0
    finally:
        clients.close()
        stop_all(servers.values())
        if rspamd is not None:
            rspamd.stop()
        if dns is not None:
            dns.close()
        shutil.rmtree(work, ignore_errors=True)


def report(args: argparse.Namespace, results: dict[str, Series], raws: list[bytes], checks: list[str]) -> None:
    print(f"\nmilter capacity, {os.cpu_count()} CPUs, {args.connections} connections x {args.per_connection} messages "
          f"each, {args.messages} messages per run ({len(raws)} corpus messages, "
          f"{sum(map(len, raws)) / len(raws) / 1024:.1f} KiB avg), median of {args.rounds} runs")
    print(f"otpguard sanity (/metrics): {'; '.join(checks)}")
    print("| variant | msgs/s (median) | runs | CPU ms/msg: milter (all processes) | of which the milter "
          "process | clients | others' share of the CPUs | load before |")
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for name, s in results.items():
        print(f"| {LABELS[name]} | {median(s.rates):.1f} | {' '.join(f'{r:.0f}' for r in s.rates)} "
              f"| {median(s.cpu):.3f} | {median(s.main):.3f} | {median(s.client):.3f} "
              f"| {median(s.others) * 100:.0f}% | {' '.join(f'{x:.2f}' for x in s.loads)} |")
    print("answers: " + "; ".join(f"{name}: " + ", ".join(f"{k.decode()}={v}" for k, v in sorted(s.finals.items()))
                                  for name, s in results.items()))

    def rate(name: str) -> float | None:
        return median(results[name].rates) if name in results else None

    def ratio(a: str, b: str, target: float | None = None) -> None:
        ra, rb = rate(a), rate(b)
        if ra is None or rb is None:
            return
        per_round = " ".join(f"{x / y:.2f}" for x, y in zip(results[a].rates, results[b].rates))
        verdict = f"  target >= {target}: {'met' if ra / rb >= target else 'NOT met'}" if target else ""
        print(f"{a} / {b}: {ra / rb:.2f}x (per round: {per_round}){verdict}")

    if "otpguard-2" in results:
        main = median(results["otpguard-2"].main)
        print(f"the milter process of otpguard-2 spends {main:.3f} ms per message: one core would carry it "
              f"to about {1000 / main:.0f} msgs/s whatever the number of workers")
    ratio("otpguard-2", "otpguard-1", TARGET_VS_ONE)
    ratio("otpguard-2", "rspamd", TARGET_VS_RSPAMD)
    ratio("otpguard-2-inet", "rspamd", TARGET_VS_RSPAMD)
    ratio("otpguard-1", "rspamd")
    for a, b in (("otpguard-pool1", "otpguard-1"), ("otpguard-pool1-onecpu", "otpguard-1"),
                 ("null-pool1", "null-1"), ("null-pool1-onecpu", "null-1")):
        if a in results and b in results:
            extra = median(results[a].cpu) - median(results[b].cpu)
            rounds = " ".join(f"{x - y:+.3f}" for x, y in zip(results[a].cpu, results[b].cpu))
            print(f"hand-off, {a} - {b}: {extra:+.3f} ms CPU per message (per round: {rounds})  "
                  f"target < {HANDOFF_TARGET_MS}: {'met' if extra < HANDOFF_TARGET_MS else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
