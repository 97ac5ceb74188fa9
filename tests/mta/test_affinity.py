"""milter.cpu_affinity: every thread of the running milter on the CPUs the config names."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.postfix import OtpguardServer, shared_tmpdir, write_test_config

ROOT = Path(__file__).resolve().parents[2]
CPUS = sorted(os.sched_getaffinity(0))


def _thread_cpus(pid: int) -> dict[int, set[int]]:
    """CPUs allowed for each thread of pid, from /proc."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[int(tid)] = os.sched_getaffinity(int(tid))
        except OSError:  # ended meanwhile
            continue
    return out


PROBE = """
import os, sys, threading
from otpguard.ops import logs
from otpguard.mta.serve import pin_cpus
logs.setup("info", "logfmt", stream=sys.stderr)
stop = threading.Event()
before = threading.Thread(target=stop.wait); before.start()   # a thread older than the pinning
print(pin_cpus(sys.argv[1]))
after = threading.Thread(target=stop.wait); after.start()     # and one started after it
print(sorted({tuple(sorted(os.sched_getaffinity(int(t))))
              for t in os.listdir("/proc/self/task")}))
stop.set()
"""


def _probe(spec: str, prelude: str = "") -> tuple[str, str, str]:
    """What pin_cpus(spec) returned, each thread's CPUs afterwards, and the log (stderr)."""
    res = subprocess.run([sys.executable, "-c", prelude + PROBE, spec], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "milter")})
    assert res.returncode == 0, res.stderr
    pinned, threads = res.stdout.splitlines()
    return pinned, threads, res.stderr


@pytest.mark.skipif(len(CPUS) < 2, reason="one CPU: nothing to choose between")
def test_auto_pins_every_thread_old_and_new_to_one_cpu():
    pinned, threads, _ = _probe("auto")
    assert pinned == f"({CPUS[-1]},)"
    assert threads == f"[({CPUS[-1]},)]"


def test_none_leaves_the_kernel_to_schedule():
    pinned, threads, _ = _probe("none")
    assert pinned == "None"
    assert threads == f"[{tuple(CPUS)}]"


@pytest.mark.skipif(len(CPUS) < 2, reason="one CPU: nothing to choose between")
def test_a_denied_sched_setaffinity_is_reported_not_claimed():
    # As under a seccomp filter that denies it (the shipped unit re-allows it on purpose).
    deny = ("import os\n"
            "def _denied(*a): raise PermissionError(1, 'Operation not permitted')\n"
            "os.sched_setaffinity = _denied\n")
    pinned, threads, log = _probe("auto", deny)
    assert (pinned, threads) == ("None", f"[{tuple(CPUS)}]")
    assert "event=cpu_affinity_unchanged" in log and "Operation not permitted" in log


def test_a_list_of_unavailable_cpus_changes_nothing():
    pinned, threads, log = _probe("4000")
    assert (pinned, threads) == ("None", f"[{tuple(CPUS)}]")
    assert "event=cpu_affinity_unchanged" in log and "none of these CPUs is available" in log


def test_cpus_not_available_are_left_out_and_said():
    pinned, threads, log = _probe(f"{CPUS[0]},4000")
    assert (pinned, threads) == (f"({CPUS[0]},)", f"[({CPUS[0]},)]")
    assert "event=cpu_affinity_narrowed" in log and "not available: [4000]" in log


@pytest.mark.integration
@pytest.mark.skipif(len(CPUS) < 2, reason="one CPU: nothing to choose between")
def test_running_milter_threads_share_the_configured_cpu():
    """The shipped "auto" in `otpguard serve`: every thread it runs at start, libmilter's included."""
    work = shared_tmpdir("otpguard-affinity-")
    try:
        sock = f"unix:{work}/m.sock"
        cfg = write_test_config(work / "m.toml", socket_spec=sock)
        server = OtpguardServer(config=cfg, socket=sock, log=work / "m.log").start()
        try:
            cpus = _thread_cpus(server.pid)
            assert len(cpus) >= 3  # main, libmilter's listener, ... all of them checked
            assert set(map(frozenset, cpus.values())) == {frozenset({CPUS[-1]})}
            assert f"event=cpu_affinity cpus={CPUS[-1]} " in (work / "m.log").read_text()
        finally:
            assert server.stop() == 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.integration
@pytest.mark.skipif(len(CPUS) < 2, reason="one CPU: nothing to choose between")
@pytest.mark.parametrize("setting", ["auto", "none"])
def test_each_analysis_worker_keeps_its_threads_on_one_cpu(setting):
    """milter.workers = 2: with "auto" worker 1 takes the lowest CPU, worker 2 the next (the
    milter process keeps the highest); with "none" nothing is pinned."""
    work = shared_tmpdir("otpguard-affinity-")
    try:
        sock = f"unix:{work}/w.sock"
        cfg = write_test_config(work / "w.toml", socket_spec=sock, changes={
            'workers = "auto"': "workers = 2", 'format = "logfmt"': 'format = "json"',
            'cpu_affinity = "auto"': f'cpu_affinity = "{setting}"'})
        server = OtpguardServer(config=cfg, socket=sock, log=work / "w.log").start()
        try:
            event = server.events("workers")[0]
            everything = set(CPUS)
            for pid, cpu, want in zip(event["pids"], event["cpus"], (CPUS[0], CPUS[1 % len(CPUS)])):
                threads = _thread_cpus(pid)
                if setting == "auto":
                    assert cpu == want and set(map(frozenset, threads.values())) == {frozenset({want})}
                else:
                    assert cpu == "any" and set(map(frozenset, threads.values())) == {frozenset(everything)}
            milter = {frozenset({CPUS[-1]})} if setting == "auto" else {frozenset(everything)}
            assert set(map(frozenset, _thread_cpus(server.pid).values())) == milter
        finally:
            assert server.stop() == 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
