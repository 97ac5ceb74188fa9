"""CPU per message inside the milter, driven over the milter protocol itself (no Postfix).

Through Postfix, msgs/s on a small shared VM moves by 20 % between runs and the milter's CPU
figure with it. This benchmark takes Postfix and the network out: it speaks milter protocol
version 6 to the socket in Postfix's order (negotiate, connect, helo, mail, rcpt, data,
headers, body, end of message, quit; the no-reply steps the milter asked for get no wait;
no macro packets, which libmilter would take in C), from a few client threads, and divides
the milter process's CPU time by the messages. Variants run in one session and rotate, so ratios compare like with like:

  bare   bench/bare_milter.py: pymilter doing nothing, the floor
  null   otpguard serve with an engine that answers "clean" at once: the adapter's own cost
  real   otpguard serve as shipped (no DNS), /metrics on: what a message costs
  real_anycpu  the same with milter.cpu_affinity = "none": threads on any CPU (the kernel's
               choice) instead of one; every other variant runs on one CPU as shipped

    .venv/bin/python bench/milter_cpu.py [-n 3000] [-c 8] [--rounds 3] [--corpus DIR] [--per-connection 1]

Messages are 512-byte ones like smtp-source's, or corpus mail with --corpus. Nothing leaves
the process but milter packets on a unix socket.
"""
from __future__ import annotations

import argparse
import shutil
import socket
import struct
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (PY, OtpguardServer, free_port, load_messages, median, milter_config,  # noqa: E402
                    process_cpu, shared_tmpdir, stop_all)
from milter_inet import BOOT  # noqa: E402  (otpguard serve with a stand-in engine)

# Protocol constants (libmilter mfdef.h).
SMFI_V6 = 6
NR_BITS = {b"C": 0x1000, b"H": 0x2000, b"M": 0x4000, b"R": 0x8000, b"T": 0x10000, b"N": 0x40000,
           b"B": 0x80000, b"L": 0x80}
NO_BITS = {b"C": 0x1, b"H": 0x2, b"M": 0x4, b"R": 0x8, b"B": 0x10, b"L": 0x20, b"N": 0x40, b"T": 0x200}
ALL_ACTIONS = 0x1FF
ALL_PROTOCOL = 0x1FFFFF
FINAL = set(b"cartdy")  # continue, accept, reject, tempfail, discard, reply code: end an EOM's answer



def packet(cmd: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data) + 1) + cmd + data


def read_packet(sock: socket.socket) -> tuple[bytes, bytes]:
    head = _recv(sock, 5)
    length = struct.unpack(">I", head[:4])[0]
    return head[4:5], _recv(sock, length - 1)


def _recv(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("milter closed the connection")
        buf += chunk
    return buf


def split(raw: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Header fields (folds kept, as Postfix passes them) and the body, CRLF line ends."""
    raw = raw.replace(b"\r\n", b"\n")
    head, _, body = raw.partition(b"\n\n")
    fields: list[list[bytes]] = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1] += b"\n" + line
        elif b":" in line:
            name, _, value = line.partition(b":")
            fields.append([name, value.lstrip(b" ")])
    return [(n, v) for n, v in fields], body.replace(b"\n", b"\r\n")


class Conversation:
    """One MTA connection to the milter, any number of messages."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.sendall(packet(b"O", struct.pack(">III", SMFI_V6, ALL_ACTIONS, ALL_PROTOCOL)))
        cmd, data = read_packet(self.sock)
        if cmd != b"O":
            raise RuntimeError(f"negotiation answered {cmd!r}")
        self.protocol = struct.unpack(">III", data[:12])[2]
        self.step(b"C", b"client.example\0" + b"4" + struct.pack(">H", 40000) + b"127.0.0.1\0")
        self.step(b"H", b"client.example\0")

    def step(self, cmd: bytes, data: bytes = b"") -> None:
        if self.protocol & NO_BITS.get(cmd, 0):
            return
        self.sock.sendall(packet(cmd, data))
        if not self.protocol & NR_BITS.get(cmd, 0):
            reply, _ = read_packet(self.sock)
            if reply not in (b"c", b"a"):
                raise RuntimeError(f"step {cmd!r} answered {reply!r}")

    def message(self, fields: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        """Send one message; returns the final reply code of end of message."""
        self.step(b"M", b"<bench@sender.example>\0")
        self.step(b"R", b"<sink@elsewhere.example>\0")
        self.step(b"T")
        for name, value in fields:
            self.step(b"L", name + b"\0" + value + b"\0")
        self.step(b"N")
        for i in range(0, len(body), 65535):
            self.step(b"B", body[i:i + 65535])
        self.sock.sendall(packet(b"E"))
        while True:
            reply, _ = read_packet(self.sock)
            if reply[0] in FINAL:
                return reply

    def close(self) -> None:
        try:
            self.sock.sendall(packet(b"Q"))
        finally:
            self.sock.close()


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
                conv = Conversation(path)
                for _ in range(n):
                    fields, body = messages[i % len(messages)]
                    conv.message(fields, body)
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
                "real_anycpu": (PY, "-m", "otpguard.cli", "serve")}
    servers: dict[str, OtpguardServer] = {}
    try:
        for name, command in commands.items():
            spec = f"unix:{work}/sock/{name}.sock"
            cfg = milter_config(work / f"{name}.toml", spec, metrics_port=free_port() if name.startswith("real") else None,
                                changes={'cpu_affinity = "auto"': 'cpu_affinity = "none"'} if name == "real_anycpu" else None)
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
                c0, t0 = process_cpu(srv.pid), time.monotonic()
                drive(srv.socket[5:], messages, args.messages, args.clients, args.per_connection)
                c1, t1 = process_cpu(srv.pid), time.monotonic()
                cpu[name].append((c1 - c0) * 1000 / args.messages)
                rate[name].append(args.messages / (t1 - t0))
                print(f"  [round {rnd + 1}] {name:<5} {cpu[name][-1]:.3f} ms CPU/msg, {rate[name][-1]:.0f} msgs/s",
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
