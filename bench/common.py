"""Helpers shared by the benchmarks that run through a private Postfix (postfix, memory, milter_inet).

Everything here drives real processes: a private Postfix instance on loopback
(tests/support/postfix.py), `otpguard serve` subprocesses, smtp-source and a concurrent
smtplib sender of corpus mail. Mail only ever goes to loopback listeners whose transport
discards it (or to the hold queue when otpguard quarantines it): nothing is relayed.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import smtplib
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from support.postfix import (OtpguardServer, PostfixInstance, free_port, postfix_available,  # noqa: E402,F401
                             shared_tmpdir, strip_mbox_from, write_test_config)

PY = str(ROOT / ".venv" / "bin" / "python")
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"
# Envelope for benchmark mail: the recipient domain is not test.example, so the private
# instance's default_transport (discard) throws every message away after queueing it.
BENCH_FROM = "bench@sender.example"
BENCH_RCPT = "sink@elsewhere.example"
SMTP_SOURCE = shutil.which("smtp-source", path="/usr/sbin:/usr/bin")


def cannot_run() -> str | None:
    """None when the Postfix benchmarks can run here, else why not."""
    if why := postfix_available():
        return why
    if SMTP_SOURCE is None:
        return "smtp-source not found (it ships with the postfix package)"
    return None


# --- otpguard configuration -----------------------------------------------------------------

def milter_config(path: Path, socket_spec: str, *, nodelay: bool = True, metrics_port: int | None = None,
                  changes: dict[str, str] | None = None) -> Path:
    """The shipped conf/otpguard.toml with auth.verify=false, the given socket and TCP_NODELAY.

    metrics_port enables /metrics on that loopback port, as a production milter would run.
    """
    edits: dict[str, str] = {"tcp_nodelay = true": f"tcp_nodelay = {'true' if nodelay else 'false'}"}
    if metrics_port is not None:
        # Same key as write_test_config's "metrics off" edit: this one wins.
        edits["[metrics]\nenabled = true"] = "[metrics]\nenabled = true"
        edits['listen = "127.0.0.1:9469"'] = f'listen = "127.0.0.1:{metrics_port}"'
    edits.update(changes or {})
    return write_test_config(path, socket_spec=socket_spec, changes=edits)


def scrape_messages(metrics_port: int) -> tuple[float, float]:
    """(otpguard_messages_total summed over labels, otpguard_errors_total summed) from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    total = errors = 0.0
    for line in text.splitlines():
        if line.startswith("otpguard_messages_total"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("otpguard_errors_total"):
            errors += float(line.rsplit(" ", 1)[1])
    return total, errors


# --- process memory --------------------------------------------------------------------------

def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (kB) and Threads of a process, from /proc/PID/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
    return out


def reset_peak_rss(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/PID/clear_refs), for the
    process and its descendants."""
    for p in (pid, *descendants(pid)):
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            continue


def tree_status(pid: int) -> dict[str, int]:
    """proc_status summed over a process and its descendants, with their number (Processes)."""
    out = {"VmRSS": 0, "VmHWM": 0, "Threads": 0, "Processes": 0}
    for p in (pid, *descendants(pid)):
        try:
            st = proc_status(p)
        except OSError:
            continue
        for k in ("VmRSS", "VmHWM", "Threads"):
            out[k] += st.get(k, 0)
        out["Processes"] += 1
    return out


class RssSampler:
    """Polls the VmRSS and threads of a process and all its descendants (a milter's zygote and
    analysis workers) in a thread, keeping the maxima of their sums, and their PSS now and then."""

    def __init__(self, pid: int, interval: float = 0.02, pss_every: int = 10) -> None:
        self.pid = pid
        self.interval = interval
        self.pss_every = pss_every
        self.max_rss_kb = 0
        self.max_pss_kb = 0
        self.max_threads = 0
        self.max_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            rss = threads = procs = 0
            for p in (self.pid, *descendants(self.pid)):
                try:
                    st = proc_status(p)
                except OSError:
                    if p == self.pid:
                        return
                    continue
                rss += st.get("VmRSS", 0)
                threads += st.get("Threads", 0)
                procs += 1
            self.max_rss_kb = max(self.max_rss_kb, rss)
            self.max_threads = max(self.max_threads, threads)
            self.max_processes = max(self.max_processes, procs)
            if n % self.pss_every == 0:
                self.max_pss_kb = max(self.max_pss_kb, tree_memory(self.pid)[2])
            n += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


# --- CPU accounting ----------------------------------------------------------------------------
# On a small, shared machine throughput is CPU-bound and noisy; CPU seconds per message by
# component (Postfix, otpguard, load generator) are steadier and say where the time goes.
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int | str) -> list[str]:
    """Fields of /proc/PID/stat after the command name (field 3 onwards)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def process_cpu(pid: int, *, children: bool = False) -> float:
    """CPU seconds (user + system, all threads) used by a process, plus its reaped children."""
    f = _stat_fields(pid)
    ticks = int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if children else 0)
    return ticks / CLK_TCK


def descendants(pid: int) -> list[int]:
    """Every live descendant of pid (a milter's zygote and workers, rspamd's workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(int(_stat_fields(entry)[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and all its descendants, with the children each one reaped
    (a worker that ended counts in its zygote's total)."""
    total = 0.0
    for p in (pid, *descendants(pid)):
        try:
            total += process_cpu(p, children=True)
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile: its time is now in its parent's children total
    return total


def tree_memory(pid: int) -> tuple[int, int, int]:
    """(processes, RSS kB summed, PSS kB summed) of a process and its descendants.

    RSS counts the pages that processes share (the workers' copy-on-write pages inherited from
    the zygote) once per process; PSS (smaps_rollup) divides each shared page among its users.
    """
    procs = rss = pss = 0
    for p in (pid, *descendants(pid)):
        try:
            rss += proc_status(p)["VmRSS"]
            with open(f"/proc/{p}/smaps_rollup") as f:
                pss += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
            procs += 1
        except (OSError, KeyError, StopIteration, ValueError):
            continue
    return procs, rss, pss


def postfix_cpu(pf: PostfixInstance) -> float:
    """CPU seconds of a Postfix instance: its master, the children it reaped, the live ones."""
    master = int((pf.root / "queue" / "pid" / "master.pid").read_text().split()[0])
    total = process_cpu(master, children=True)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            f = _stat_fields(entry)
            if int(f[1]) == master:  # smtpd, cleanup, qmgr, discard... (they do not fork)
                total += (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile: its time is now in the master's children total
    return total


def machine_busy() -> float:
    """CPU seconds all CPUs spent busy (not idle, not waiting for I/O) since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK  # user..steal, less idle and iowait


def children_cpu() -> float:
    """CPU seconds of this process's reaped children (smtp-source runs)."""
    t = os.times()
    return t.children_user + t.children_system


def own_cpu() -> float:
    """CPU seconds of this process (the smtplib sender threads)."""
    t = os.times()
    return t.user + t.system


# --- load generators -------------------------------------------------------------------------

def smtp_source(port: int, messages: int, sessions: int, size: int = 512) -> float:
    """Seconds smtp-source takes to push messages through one listener (until its last QUIT)."""
    t0 = time.monotonic()
    subprocess.run([SMTP_SOURCE or "smtp-source", "-s", str(sessions), "-m", str(messages), "-l", str(size),
                    "-f", BENCH_FROM, "-t", BENCH_RCPT, f"127.0.0.1:{port}"],
                   check=True, timeout=600, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def corpus_files(root: Path) -> list[Path]:
    """Every message file of the corpus (phish, legit, hardneg, traffic ham and spam)."""
    out = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            if not name.endswith((".tsv", ".md")) and not name.startswith("."):
                out.append(Path(dirpath) / name)
    return sorted(out)


def load_messages(root: Path, count: int, *, seed: int = 6, only: Sequence[str] = (),
                  max_bytes: int = 2_000_000) -> list[bytes]:
    """count corpus messages in a fixed shuffled order (mbox "From " line removed).

    only keeps files under those top-level folders (e.g. ("traffic",) for ordinary mail).
    Files are cycled when the corpus is smaller than count.
    """
    files = [p for p in corpus_files(root) if not only or p.relative_to(root).parts[0] in only]
    if not files:
        raise FileNotFoundError(f"no corpus messages under {root}")
    random.Random(seed).shuffle(files)
    out: list[bytes] = []
    i = 0
    while len(out) < count:
        # SMTP wants CRLF; smtplib only dot-stuffs bytes, it does not fix their line ends.
        raw = re.sub(rb"\r?\n", b"\r\n", strip_mbox_from(files[i % len(files)].read_bytes()))
        i += 1
        if raw.strip() and len(raw) <= max_bytes:
            out.append(raw)
        if i > count + 10 * len(files):
            raise RuntimeError("corpus has too few usable messages")
    return out


@dataclass(slots=True)
class SendResult:
    """What a concurrent send achieved."""

    seconds: float
    accepted: int
    failed: int
    errors: list[str]


def send_concurrent(port: int, messages: Sequence[bytes], *, sessions: int, per_session: int,
                    barrier: bool = False, timeout: float = 120) -> SendResult:
    """Send messages over `sessions` concurrent SMTP connections, per_session messages per
    connection (then QUIT and reconnect), until all are sent.

    barrier=True makes every session connect and EHLO before any sends mail, so all of
    them are open at once (the memory benchmark needs truly concurrent sessions).
    """
    batches = [list(messages[i:i + per_session]) for i in range(0, len(messages), per_session)]
    if barrier and len(batches) < sessions:
        raise ValueError(f"barrier needs at least {sessions} batches, got {len(batches)}")
    batches.reverse()  # pop() from the end keeps the corpus order
    lock = threading.Lock()
    accepted = failed = 0
    errors: list[str] = []
    gate = threading.Barrier(sessions) if barrier else None

    def worker() -> None:
        nonlocal accepted, failed
        first = True
        while True:
            with lock:
                if not batches:
                    return
                batch = batches.pop()
            ok = bad = 0
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as smtp:
                    smtp.ehlo("client.sender.example")
                    if first and gate is not None:
                        gate.wait(timeout)
                    first = False
                    for raw in batch:
                        code, reply = smtp.mail(BENCH_FROM)
                        if code == 250:
                            code, reply = smtp.rcpt(BENCH_RCPT)
                        if code in (250, 251):
                            code, reply = smtp.data(raw)
                        else:
                            smtp.rset()
                        if code == 250:
                            ok += 1
                        else:
                            bad += 1
                            with lock:
                                errors.append(f"{code} {reply[:120]!r}")
            except (OSError, smtplib.SMTPException, threading.BrokenBarrierError) as exc:
                bad = len(batch) - ok
                with lock:
                    errors.append(repr(exc)[:160])
            with lock:
                accepted += ok
                failed += bad

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, name=f"smtp-{i}") for i in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return SendResult(seconds=time.monotonic() - t0, accepted=accepted, failed=failed, errors=errors)


# --- completion, counted from the maillog ------------------------------------------------------

# One line per finished message: delivered to the discard transport, put on hold by the
# milter (quarantine), or bounced. Counting these is how the clock stops only once the
# queue has drained, without calling postqueue (which costs CPU on a 2-CPU machine).
DONE_RE = re.compile(rb"status=sent \(|status=bounced |: milter-hold: ")


class Completions:
    """Counts finished messages in a Postfix instance's maillog from a mark onwards."""

    def __init__(self, pf: PostfixInstance) -> None:
        self.pf = pf
        self._offset = 0
        self._partial = b""
        self.count = 0
        self.holds = 0

    def mark(self) -> None:
        """Start counting from the current end of the maillog."""
        self._offset = self.pf.maillog.stat().st_size if self.pf.maillog.exists() else 0
        self._partial = b""
        self.count = self.holds = 0

    def poll(self) -> int:
        """Read new log lines; returns the number of finished messages since mark()."""
        try:
            with self.pf.maillog.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self.count
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if DONE_RE.search(line):
                self.count += 1
                if b"milter-hold" in line:
                    self.holds += 1
        return self.count

    def wait(self, expected: int, timeout: float = 120) -> float:
        """Poll until expected messages have finished; returns the monotonic time it happened."""
        deadline = time.monotonic() + timeout
        while self.poll() < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.count}/{expected} messages finished in {timeout:g}s\n"
                                   f"--- maillog ---\n{self.pf.log_tail()}")
            time.sleep(0.01)
        return time.monotonic()


def median(values: Iterable[float]) -> float:
    """Median (the machine is noisy: one slow run must not decide a figure)."""
    return statistics.median(list(values))


def stop_all(servers: Iterable[OtpguardServer]) -> None:
    """SIGTERM every server at once, then wait: pymilter needs ~4 s each to exit."""
    servers = [s for s in servers if s.proc is not None and s.proc.poll() is None]
    for s in servers:
        s.proc.terminate()  # type: ignore[union-attr]
    for s in servers:
        s.stop()
