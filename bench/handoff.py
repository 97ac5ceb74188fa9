"""The hand-off alone: what it costs a message to reach an analysis worker and come back,
against the in-process path, with the milter protocol and the analysis taken out.

bench/milter_load.py measures the hand-off through the milter protocol (null-pool1 - null-1),
where some 0.5 ms of protocol per message surround it and CPU comes from /proc ticks: on a
shared VM its rounds scatter by a few tenths of a millisecond, more than the hand-off costs.
Here the milter's own code runs in a loop, and the figure is the CPU time of the whole loop
(this process with all its threads, plus the worker process) divided by the messages:

  in-process  what end of message does with workers = 1 (mta/handler.py): the message's bytes,
              then run_with_deadline, a thread of the analysis thread pool, runs the engine
  pool        what it does with workers > 1: WorkerPool.analyse on a pool of one worker
              process, started as the milter starts it (zygote, supervisor, slots; the message
              over mta/wire.py, the envelope and decision through mta/codec.py)

Both run the same stand-in engine: it answers at once, with the Decision the real engine gave
that message beforehand (so the decisions that cross are the real mix: mostly clean mail with
few symbols, some phish with a dozen, each with its reason). The messages are corpus mail (the mix of bench/postfix.py). --threads callers at a time, as libmilter's
threads call end of message; variants alternate, --rounds each, medians reported.

The worker runs twice: on another CPU than the callers (cpu_affinity = "auto", as shipped) and
on the callers' own CPU. The difference between the two is what a wake-up across CPUs costs on
the host (on a VM, an inter-processor interrupt through the hypervisor).

    .venv/bin/python bench/handoff.py [--corpus DIR] [-n 20000] [--threads 1,10] [--rounds 5]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "milter"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_CORPUS, load_messages, median, process_cpu  # noqa: E402

from otpguard.config import Config, load_config  # noqa: E402
from otpguard.core.model import Decision, Envelope  # noqa: E402
from otpguard.engine import Engine  # noqa: E402
from otpguard.mta import pool as worker_pool  # noqa: E402
from otpguard.mta.deadline import run_with_deadline  # noqa: E402
from otpguard.mta.serve import pin_cpus  # noqa: E402
from otpguard.mta.spool import CollectedMessage, Spool  # noqa: E402
from otpguard.mta.zygote import Zygote  # noqa: E402

HANDOFF_TARGET_MS = 0.1  # issue 17: the extra CPU per message of the worker path
BUDGET = 10.0
ENVELOPE = Envelope(mail_from="bounce@example.net", rcpt_to=("user@example.org",), client_ip="192.0.2.25",
                    helo="mail.example.net", queue_id="4Q1xyz0AbC")


class ReplyEngine:
    """The stand-in engine: the real engine's decision for the message, looked up at once."""

    decisions: dict[bytes, Decision]  # set before the zygote forks, so the worker has them too

    def __init__(self, config: Config | None = None, metrics: Any = None) -> None:
        pass

    def analyse(self, raw: bytes, envelope: Envelope, **kwargs: Any) -> Decision:
        return self.decisions[raw]


def collected(raw: bytes, spool_bytes: int) -> CollectedMessage:
    """raw as the adapter collects it: header fields one by one, then the body."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, _, body = raw.partition(b"\n\n")
    msg = CollectedMessage(mail_from=ENVELOPE.mail_from, rcpt_to=list(ENVELOPE.rcpt_to), headers=[],
                           body=Spool(spool_bytes, tempfile.gettempdir()), max_message_bytes=10**8,
                           max_parse_bytes=10**8)
    fields: list[list[bytes]] = []
    for line in head.splitlines():
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    for lines in fields:
        name, _, value = b"\r\n".join(lines).partition(b":")
        msg.add_header(name.decode("latin-1"), value.lstrip(b" "))
    msg.add_body(body)
    return msg


def timed(call: Callable[[CollectedMessage], object], messages: list[CollectedMessage], n: int,
          threads: int, worker_pid: int | None) -> tuple[float, float]:
    """CPU microseconds per message: this process (all threads), and the worker (0 without)."""
    share = n // threads

    def loop(start: int) -> None:
        for i in range(share):
            call(messages[(start + i) % len(messages)])

    here0, there0 = time.process_time(), process_cpu(worker_pid) if worker_pid else 0.0
    callers = [threading.Thread(target=loop, args=(k * 97,)) for k in range(threads)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    here1, there1 = time.process_time(), process_cpu(worker_pid) if worker_pid else 0.0
    per = 1e6 / (share * threads)
    return (here1 - here0) * per, (there1 - there0) * per


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--config", type=Path, default=ROOT / "conf" / "otpguard.toml")
    ap.add_argument("-n", "--messages", type=int, default=20000, help="messages per run")
    ap.add_argument("--threads", default="1,10", help="concurrent callers, comma-separated")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    config = load_config(args.config)
    raws = load_messages(args.corpus, 1200)
    messages = [collected(raw, config.milter.spool_bytes) for raw in raws]
    engine = Engine(config, verify=False)
    # Keyed by the bytes both paths hand the engine: the message as collected, written out again.
    ReplyEngine.decisions = {m.raw(): engine.analyse(m.raw(), ENVELOPE) for m in messages}
    del engine
    symbols = sorted(len(d.hits) for d in ReplyEngine.decisions.values())

    zygote = Zygote.start(ReplyEngine)  # before any thread, as serve.run does
    pinned = pin_cpus("auto")  # as shipped: the milter process on one CPU (the highest); None on one CPU
    supervisor = worker_pool.Supervisor(zygote, ReplyEngine, cpu_affinity="auto")
    pools = {"other": supervisor.pool(config, 1, 1)}  # "auto": worker 1 on the lowest CPU
    if pinned is not None:  # the same worker on the milter's CPU: the hand-off without a cross-CPU wake-up
        supervisor.cpu_affinity = ",".join(map(str, pinned))
        pools["same"] = supervisor.pool(config, 1, 2)
    here = ReplyEngine()

    def in_process(msg: CollectedMessage) -> object:
        raw = msg.raw()
        return run_with_deadline(lambda: here.analyse(raw, ENVELOPE, truncated=False), BUDGET)

    def through(workers: worker_pool.WorkerPool) -> Callable[[CollectedMessage], object]:
        return lambda msg: workers.analyse(msg, ENVELOPE, BUDGET)

    variants: dict[str, tuple[Callable[[CollectedMessage], object], int | None]] = {"in": (in_process, None)}
    for where, workers in pools.items():
        variants[where] = (through(workers), workers.workers[0].pid)
    for call, _ in variants.values():  # warm-up: threads, slots, caches
        timed(call, messages, 2000, 10, None)
    cpus = {where: workers.workers[0].cpu for where, workers in pools.items()}
    print(f"hand-off alone, {os.cpu_count()} CPUs, {len(messages)} corpus messages (their decisions: "
          f"{median(symbols):g} symbols in the median, {symbols[-1]} at most), {args.messages} messages per run, "
          f"median of {args.rounds} "
          f"runs; CPU of the calling process (all threads) and of the worker; the callers on CPU "
          f"{'any' if pinned is None else ','.join(map(str, pinned))}, the worker on CPU "
          + ", then ".join("any" if c is None else str(c) for c in cpus.values()))
    print("| callers | worker | in-process, CPU us/msg | worker path, CPU us/msg | of which the caller | the worker "
          "| hand-off, ms | per round, ms |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    labels = {"other": "another CPU" if pinned is not None else "any CPU", "same": "the caller's CPU"}
    verdicts = {}
    for threads in (int(t) for t in args.threads.split(",")):
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for rnd in range(args.rounds):
            names = list(variants)
            for name in names[rnd % len(names):] + names[:rnd % len(names)]:
                call, pid = variants[name]
                runs[name].append(timed(call, messages, args.messages, threads, pid))
        base = runs["in"]
        for where in pools:
            extra = [(sum(p) - sum(i)) / 1000 for p, i in zip(runs[where], base)]
            verdicts[(threads, where)] = median(extra)
            label = labels[where]
            print(f"| {threads} | {label} | {median(sum(r) for r in base):.1f} | {median(sum(r) for r in runs[where]):.1f} "
                  f"| {median(r[0] for r in runs[where]):.1f} | {median(r[1] for r in runs[where]):.1f} "
                  f"| {median(extra):+.3f} | {' '.join(f'{e:+.3f}' for e in extra)} |")
    for where in pools:
        worst = max(v for (_, w), v in verdicts.items() if w == where)
        print(f"hand-off, worker on {labels[where]}: "
              f"at most {worst:+.3f} ms CPU per message  target < {HANDOFF_TARGET_MS}: "
              f"{'met' if worst < HANDOFF_TARGET_MS else 'NOT met'}")
    for workers in pools.values():
        workers.close()
    supervisor.stop()
    zygote.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
