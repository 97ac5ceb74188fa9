"""CPU per message inside the milter, driven over the milter protocol itself (no Postfix).

Through Postfix, msgs/s on a small shared VM moves by 20 % between runs and the milter's CPU
figure with it. This benchmark takes Postfix and the network out: it speaks milter protocol
version 6 to the socket as Postfix does (tests/support/milterproto.py: Postfix's offer and
default macros; negotiate, connect, helo, mail, rcpt, data, headers, body, end of message,
quit; the no-reply steps the milter asked for get no wait), from a few client threads, and divides
the milter process's CPU time by the messages. Variants run in one session and rotate, so ratios compare like with like:

  bare   bench/bare_milter.py: pymilter doing nothing, the floor
  null   otpguard serve with an engine that answers "clean" at once: the adapter's own cost
  real   otpguard serve (no DNS), /metrics on, milter.workers = 1: what a message costs in one
         process, as earlier sessions measured it
  real_anycpu  the same with milter.cpu_affinity = "none": threads on any CPU (the kernel's
               choice) instead of one; every other variant runs on one CPU as shipped
  real_workers  otpguard serve as shipped: milter.workers = "auto" (one analysis worker process
                per usable CPU); its CPU is that of all its processes
bare, null, real and real_anycpu analyse in the milter process (milter.workers = 1).

    .venv/bin/python bench/milter_cpu.py [-n 3000] [-c 8] [--rounds 3] [--corpus DIR] [--per-connection 1]

Messages are 512-byte ones like smtp-source's, or corpus mail with --corpus. Nothing leaves
the process but milter packets on a unix socket.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (PY, OtpguardServer, free_port, load_messages, median, milter_config,  # noqa: E402
                    shared_tmpdir, stop_all, tree_cpu)
from milter_inet import BOOT  # noqa: E402  (otpguard serve with a stand-in engine)
from support.milterproto import Conversation, message_script, split  # noqa: E402  (Postfix's side)

def drive(path: str, messages: list[tuple[list[tuple[bytes, bytes]], bytes]], count: int, clients: int,
          per_connection: int) -> None:
    """count messages over `clients` concurrent connections, per_connection messages each."""
    lock = threading.Lock()
    todo = [count]
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        i = k
        try:
            while True:
                with lock:
                    if todo[0] <= 0:
                        return
                    n = min(per_connection, todo[0])
                    todo[0] -= n
                conv = Conversation(f"unix:{path}")
                for _ in range(n):
                    fields, body = messages[i % len(messages)]
                    conv.send_prepared(message_script(conv.protocol, fields, body))
                    i += clients
                conv.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed: {errors[0]!r}")


def smtp_source_like(n: int = 64) -> list[bytes]:
    """512-byte messages shaped like smtp-source's (a few headers, short lines)."""
    out = []
    for i in range(n):
        head = (f"From: <bench@sender.example>\r\nTo: <sink@elsewhere.example>\r\n"
                f"Date: Sun, 22 Nov 2026 02:00:00 +0000\r\nMessage-Id: <{i}.bench@sender.example>\r\n"
                f"Subject: test message {i}\r\n\r\n").encode()
        out.append(head + b"La de da de da 1.\r\n" * ((512 - len(head)) // 19))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--messages", type=int, default=3000, help="messages per run")
    ap.add_argument("-c", "--clients", type=int, default=8, help="concurrent connections")
    ap.add_argument("--per-connection", type=int, default=1, help="messages per connection (smtp-source: 1)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--corpus", type=Path, help="send corpus mail instead of 512-byte messages")
    ap.add_argument("--corpus-messages", type=int, default=1200)
    args = ap.parse_args()

    raws = load_messages(args.corpus, args.corpus_messages) if args.corpus else smtp_source_like()
    messages = [split(r) for r in raws]
    work = shared_tmpdir("otpguard-bench-cpu-")
    (work / "sock").mkdir(mode=0o755)
    here = Path(__file__).resolve().parent
    commands = {"bare": (PY, str(here / "bare_milter.py")),
                "null": (PY, "-c", BOOT, "null", "data"),
                "real": (PY, "-m", "otpguard.cli", "serve"),
                "real_anycpu": (PY, "-m", "otpguard.cli", "serve"),
                "real_workers": (PY, "-m", "otpguard.cli", "serve")}
    servers: dict[str, OtpguardServer] = {}
    try:
        for name, command in commands.items():
            spec = f"unix:{work}/sock/{name}.sock"
            changes = {} if name == "real_workers" else {'workers = "auto"': "workers = 1"}
            if name == "real_anycpu":
                changes['cpu_affinity = "auto"'] = 'cpu_affinity = "none"'
            cfg = milter_config(work / f"{name}.toml", spec, metrics_port=free_port() if name.startswith("real") else None,
                                changes=changes)
            servers[name] = OtpguardServer(config=cfg, socket=spec, log=work / f"{name}.log", command=command,
                                           env={"PYTHONPATH": str(here.parent / "milter")}).start()
        for name, srv in servers.items():  # warm-up: imports, caches, libmilter's threads
            drive(srv.socket[5:], messages, 200, args.clients, args.per_connection)
        cpu: dict[str, list[float]] = {name: [] for name in servers}
        rate: dict[str, list[float]] = {name: [] for name in servers}
        names = list(servers)
        for rnd in range(args.rounds):
            for name in names[rnd % len(names):] + names[:rnd % len(names)]:
                srv = servers[name]
                c0, t0 = tree_cpu(srv.pid), time.monotonic()
                drive(srv.socket[5:], messages, args.messages, args.clients, args.per_connection)
                c1, t1 = tree_cpu(srv.pid), time.monotonic()
                cpu[name].append((c1 - c0) * 1000 / args.messages)
                rate[name].append(args.messages / (t1 - t0))
                print(f"  [round {rnd + 1}] {name:<12} {cpu[name][-1]:.3f} ms CPU/msg, {rate[name][-1]:.0f} msgs/s",
                      flush=True)
        kind = f"corpus mail ({len(raws)} messages)" if args.corpus else "512-byte messages"
        print(f"\nmilter CPU per message, {kind}, {args.clients} connections, {args.per_connection} "
              f"message(s) per connection, median of {args.rounds} runs of {args.messages}")
        print("| milter | CPU ms/msg | runs | x bare | msgs/s (client-bound) |")
        print("|---|---:|---|---:|---:|")
        base = median(cpu["bare"])
        for name in names:
            print(f"| {name} | {median(cpu[name]):.3f} | {' '.join(f'{c:.3f}' for c in cpu[name])} "
                  f"| {median(cpu[name]) / base:.2f} | {median(rate[name]):.0f} |")
        return 0
    finally:
        stop_all(servers.values())
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
