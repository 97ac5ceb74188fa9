"""Memory of `otpguard serve` through a real private Postfix: 50 concurrent sessions, one huge message.

1. Peak memory of one milter while 50 SMTP sessions are open at once, each sending ordinary
   mail (the corpus's traffic ham and spam). A milter is all its processes: with the shipped
   milter.workers = "auto" the milter process, its zygote and one analysis worker per usable
   CPU. Reported: the highest sum of their RSS (sampled every 20 ms), the sum of each one's
   own peak (VmHWM, an upper bound), and the highest sum of their PSS (shared pages divided
   among the processes that share them: the workers share most of their pages with the
   zygote). Target for the sampled RSS sum: < 200 MB for one process, plus 100 MB per worker
   process (each is a copy of the program and parses the messages it is given).
2. Memory increase caused by one big message (default 50 MiB: a short text part and a base64
   attachment of random bytes), on a fresh milter warmed up with ordinary mail: VmHWM of every
   process is reset to its current RSS just before (echo 5 > /proc/PID/clear_refs), and the
   increase is the sum of VmHWM after the message minus the sum of RSS before it. Target
   < 64 MB. The milter keeps bodies in memory up to milter.spool_bytes and spools the rest to
   disk (a worker reads a spooled body from the file: it never crosses between processes);
   messages over analysis.max_message_bytes are not analysed.
Each milter runs the shipped config (auth.verify = false, /metrics on a free loopback port) on
a unix socket. Mail goes to the discard transport or the hold queue: nothing is relayed.

    .venv/bin/python bench/memory.py [--sessions 50] [--per-session 10] [--big-mb 50[,19...]]
Needs root (private Postfix).
"""
from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import smtplib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (BENCH_FROM, BENCH_RCPT, DEFAULT_CORPUS, Completions, OtpguardServer,  # noqa: E402
                    PostfixInstance, RssSampler, cannot_run, free_port, load_messages, milter_config,
                    reset_peak_rss, scrape_messages, send_concurrent, shared_tmpdir, stop_all,
                    tree_memory, tree_status)

MiB = 1024 * 1024
PEAK_TARGET_MB = 200  # one process; plus PER_WORKER_TARGET_MB per analysis worker process
PER_WORKER_TARGET_MB = 100
BIG_TARGET_MB = 64


def big_message(size: int) -> bytes:
    """A multipart message of about size bytes: text part plus a base64 attachment (CRLF)."""
    head = (b"From: Big Sender <big@sender.example>\r\nTo: <sink@elsewhere.example>\r\n"
            b"Subject: quarterly archive\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
            b"Message-ID: <big-1@sender.example>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
            b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe archive is attached.\r\n"
            b"--b1\r\nContent-Type: application/octet-stream; name=\"archive.bin\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"archive.bin\"\r\n\r\n")
    tail = b"\r\n--b1--\r\n"
    # 76 base64 characters + CRLF encode 57 bytes: pick the payload that fills size.
    lines = max(1, (size - len(head) - len(tail)) // 78)
    encoded = base64.encodebytes(os.urandom(lines * 57)).replace(b"\n", b"\r\n")
    return head + encoded.rstrip(b"\r\n") + tail


def send_one(port: int, raw: bytes) -> tuple[int, bytes]:
    """Send one message in its own SMTP session; returns the reply to end of DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=300) as smtp:
        smtp.ehlo("client.sender.example")
        smtp.mail(BENCH_FROM, ["SIZE=%d" % len(raw)])
        smtp.rcpt(BENCH_RCPT)
        return smtp.data(raw)


def mb(kb: int) -> float:
    """kB (as /proc reports) to MB (10^6 bytes, as the targets are written)."""
    return kb * 1024 / 1e6


def last_message_line(log: Path) -> str:
    """The milter's log line for its last message (verdict, notes), for the report."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if "event=message" in ln]
    return lines[-1] if lines else "(no message line)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=50, help="concurrent SMTP sessions (all open at once)")
    ap.add_argument("--per-session", type=int, default=10, help="ordinary messages per session")
    ap.add_argument("--big-mb", type=lambda v: [float(x) for x in v.split(",")], default=[50.0],
                    help="comma-separated sizes (MiB) of big messages, one fresh milter each")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = ap.parse_args()
    if why := cannot_run():
        print(f"memory benchmark cannot run: {why}", file=sys.stderr)
        return 2

    work = shared_tmpdir("otpguard-bench-mem-")
    (work / "sock").mkdir(mode=0o755)
    names = ["concurrent", *[f"big{i}" for i in range(len(args.big_mb))]]
    specs = {n: f"unix:{work}/sock/{n}.sock" for n in names}
    metrics_ports = {n: free_port() for n in names}
    servers: dict[str, OtpguardServer] = {}
    limit = int(max(args.big_mb) * MiB) + 16 * MiB  # Postfix must accept the big message
    pf = PostfixInstance.create(specs, root=work / "postfix",
                                main_cf={"message_size_limit": str(limit), "virtual_mailbox_limit": str(limit)})
    try:
        for n in names:
            cfg = milter_config(work / f"{n}.toml", specs[n], metrics_port=metrics_ports[n])
            servers[n] = OtpguardServer(config=cfg, socket=specs[n], log=work / f"{n}.log").start()
        pf.start()
        done = Completions(pf)
        ordinary = load_messages(args.corpus, args.sessions * args.per_session + 40, only=("traffic",))
        warm, load = ordinary[:40], ordinary[40:]

        # 1. Concurrent sessions.
        srv = servers["concurrent"]
        done.mark()
        send_concurrent(pf.listeners["concurrent"], warm, sessions=4, per_session=10)
        done.wait(len(warm))
        idle = tree_status(srv.pid)
        workers = idle["Processes"] - 2 if idle["Processes"] > 1 else 0  # less the milter and its zygote
        target = PEAK_TARGET_MB + PER_WORKER_TARGET_MB * workers
        done.mark()
        with RssSampler(srv.pid) as sampler:
            res = send_concurrent(pf.listeners["concurrent"], load, sessions=args.sessions,
                                  per_session=args.per_session, barrier=True)
            done.wait(res.accepted, timeout=300)
        after = tree_status(srv.pid)
        _, _, pss_after = tree_memory(srv.pid)
        analysed, errors = scrape_messages(metrics_ports["concurrent"])
        # libmilter runs one thread per MTA connection (plus a few of its own and ours).
        print(f"{args.sessions} concurrent SMTP sessions x {args.per_session} ordinary messages "
              f"({sum(map(len, load)) / len(load) / 1024:.1f} KiB avg): {res.accepted} accepted, "
              f"{res.failed} refused, {analysed:.0f} analysed, {errors:.0f} errors, "
              f"{res.accepted / res.seconds:.0f} msgs/s")
        print(f"  {idle['Processes']} processes ({workers} analysis workers); RSS after warm-up "
              f"{mb(idle['VmRSS']):.1f} MB; peak threads {sampler.max_threads}")
        peak = mb(sampler.max_rss_kb)
        print(f"  peak RSS of all processes together (sampled) {peak:.1f} MB   target < {target} MB "
              f"({PEAK_TARGET_MB} + {PER_WORKER_TARGET_MB} x {workers} workers): "
              f"{'met' if peak < target else 'NOT met'}")
        print(f"  sum of each process's own peak (VmHWM) {mb(after['VmHWM']):.1f} MB; peak PSS of all "
              f"(sampled) {mb(sampler.max_pss_kb):.1f} MB, {mb(pss_after):.1f} MB after")
        if res.failed:
            print(f"  refusals: {res.errors[:3]}", file=sys.stderr)

        # 2. One big message per fresh milter.
        for i, size_mib in enumerate(args.big_mb):
            n = f"big{i}"
            srv = servers[n]
            done.mark()
            send_concurrent(pf.listeners[n], warm, sessions=4, per_session=10)
            done.wait(len(warm))
            raw = big_message(int(size_mib * MiB))
            time.sleep(0.5)  # let the warm-up's last analysis threads finish
            reset_peak_rss(srv.pid)
            before = tree_status(srv.pid)
            done.mark()
            t0 = time.monotonic()
            with RssSampler(srv.pid) as sampler:
                code, reply = send_one(pf.listeners[n], raw)
                if code == 250:
                    done.wait(1, timeout=300)
            seconds = time.monotonic() - t0
            after = tree_status(srv.pid)
            rise = mb(after["VmHWM"] - before["VmRSS"])
            verdict = last_message_line(work / f"{n}.log")
            ms = re.search(r"\bms=([0-9.]+)", verdict)
            print(f"one {len(raw) / 1e6:.1f} MB message ({size_mib:g} MiB, base64 attachment): reply {code}, "
                  f"{seconds:.1f} s end to end, milter eom {ms.group(1) if ms else '?'} ms")
            print(f"  all {after['Processes']} processes: RSS before {mb(before['VmRSS']):.1f} MB, peak (each one's VmHWM, "
                  f"summed) {mb(after['VmHWM']):.1f} MB, after "
                  f"{mb(after['VmRSS']):.1f} MB: increase {rise:.1f} MB   target < {BIG_TARGET_MB} MB: "
                  f"{'met' if rise < BIG_TARGET_MB else 'NOT met'}")
            print(f"  milter log: {verdict[verdict.find('verdict='):][:160]}")
        return 0
    finally:
        pf.cleanup()
        stop_all(servers.values())
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
