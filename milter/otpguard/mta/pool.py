"""Analysis in worker processes (`[milter] workers`): capacity that grows with the host's cores.

One Python process analyses on one core at a time (the GIL). With workers > 1:

    milter process    libmilter's threads: the protocol, actions, log lines, metrics, burst counts
      zygote          forked at start, before any thread (mta/zygote.py); forks the workers
        worker 1..N   one Engine each (mta/worker.py); one thread per slot

At end of message, the message's own thread takes an idle slot of the least busy worker
(asking the worker for a new one when none is idle), sends the message (mta/wire.py) and waits
for the decision, all within analysis.time_budget_seconds. No thread of the milter stands in
between: the hand-off is two system calls and a small encoding (mta/codec.py). The burst
counts, metrics and logs stay in the milter process, so the memory backend counts across
workers and every metric keeps its name and counts each message once; what the engine reports
to metrics in a worker (DNS latency) comes back with the reply and is replayed here.

What can go wrong, and what it costs:
- A worker overruns the budget with a message: that message gets its on_error answer at the
  budget, like a thread that overran before; but a process can be stopped where a thread
  could not: the worker is killed and replaced. Messages it held for other connections are
  sent again to another worker, within their own budgets.
- A worker dies (a crash, the OOM killer, kill -9): each message it held gets its on_error
  answer at once (which one killed it is unknowable, so none is sent again); it is replaced.
  A worker that keeps dying is replaced after a growing pause.
- Both are logged (`worker_lost`, `worker_started`) and counted
  (`otpguard_worker_restarts_total{reason}`, `otpguard_workers`).
- SIGHUP: a new pool with the new config is started and swapped in whole; each message uses
  the runtime (config, engine, pool) its end of message began with, and a retired pool closes
  when its last analysis is done. A message that reaches its pool after that starts over with
  the new runtime (RuntimeReplaced; nothing was done yet). No message is judged by a mix of
  configs.
- SIGTERM: the milter waits for its messages in flight (whose analyses are in the workers),
  then exits; the workers and the zygote see their sockets close and exit too.
"""
from __future__ import annotations

import array
import collections
import logging
import math
import os
import pickle
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config, MilterConfig
from ..core.model import Decision, Envelope
from ..ops import logs
from . import codec, wire
from .deadline import AnalysisTimeout
from .runtime import RuntimeReplaced
from .spool import CollectedMessage
from .worker import SLOT, EngineFactory, WorkerSpec
from .zygote import Zygote

# "auto" stops here. The milter process does the protocol, actions, logs and metrics for every
# worker, on one core: about 0.65 ms of a corpus message's 2.1 ms (BENCHMARKS.md), so it
# carries some 1,500 msgs/s on the measuring machine, which two or three workers already feed
# at today's analysis cost. Eight leave room for heavier analysis and DNS waits; more would
# only hold memory.
AUTO_MAX_WORKERS = 8
# Below this many workers, analysis stays in the milter process (workers = 1: as always).
POOL_FROM = 2
# Slots (concurrent messages) per worker: the 64 analysis threads of one process, shared out,
# and never fewer than 8, so that messages waiting on DNS do not hold up the others.
TOTAL_SLOTS, MIN_SLOTS = 64, 8
START_SECONDS = 60.0  # longest wait for a pool's workers to build their engines
# A worker that dies again and again is replaced after a pause that doubles up to this.
MAX_RESPAWN_PAUSE = 30.0
RESTART_WINDOW, RESTARTS_WITHOUT_PAUSE = 10.0, 3
STOP_SECONDS = 2.0  # the supervisor's thread ends at its next wake-up: at once, unless it is busy

STARTING, READY, DEAD = "starting", "ready", "dead"
RESTART_REASONS = ("died", "overran")


# --- how many -----------------------------------------------------------------------------------

def cgroup_cpu_limit(proc_cgroup: Path = Path("/proc/self/cgroup"),
                     root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup and its parents (v2 cpu.max, e.g. systemd's
    CPUQuota=), in CPUs; None when there is none."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    paths = [entry.split(":", 2)[2] for entry in lines if entry.startswith("0::")]
    if not paths:
        return None
    limit = None
    group = root / paths[0].lstrip("/")
    for directory in (group, *group.parents):
        try:
            quota, period = (directory / "cpu.max").read_text().split()
            cpus = None if quota == "max" else int(quota) / int(period)
        except (OSError, ValueError, ZeroDivisionError):
            cpus = None
        if cpus is not None and cpus > 0:
            limit = cpus if limit is None else min(limit, cpus)
        if directory == root:
            break
    return limit


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity, bounded by a cgroup CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def worker_count(milter: MilterConfig, cpus: int | None = None) -> int:
    """The number of analysis processes `milter.workers` asks for on this host (1: in-process).

    `otpguard doctor` and the start-up line report it; cpus defaults to usable_cpus().
    """
    if isinstance(milter.workers, int):
        return milter.workers
    return min(usable_cpus() if cpus is None else cpus, AUTO_MAX_WORKERS)


def describe_workers(milter: MilterConfig, cpus: int | None = None) -> str:
    """One phrase for people: "2 (auto: 2 usable CPUs)", "1 (in the milter process)", "4"."""
    n = worker_count(milter, cpus)
    if isinstance(milter.workers, int):
        return f"{n}" + (" (in the milter process)" if n < POOL_FROM else "")
    cpus = usable_cpus() if cpus is None else cpus
    where = " (in the milter process)" if n < POOL_FROM else ""
    return f"{n} (auto: {cpus} usable CPU{'s' if cpus != 1 else ''}, at most {AUTO_MAX_WORKERS}){where}"


# --- errors a message can meet here -----------------------------------------------------------

class WorkerLost(Exception):
    """The worker analysing the message ended, or none is running: on_error applies."""

    stage = "worker"


class AnalysisFailed(Exception):
    """The engine raised in the worker; the text names the exception, as in one process."""

    stage = "analysis"

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.kind = text.partition(":")[0] or "Exception"


class WorkerStartError(Exception):
    """A new pool's workers could not be started (the milter keeps what it has)."""


# --- one worker, as the milter sees it ------------------------------------------------------------

class _Worker:
    """A worker process: its control socket, its slots, how busy it is, how it ended."""

    __slots__ = ("number", "pool", "ctl", "pid", "cpu", "state", "idle", "slots", "busy", "reason", "cause",
                 "guilty", "ended", "token", "problem", "replacing")

    def __init__(self, number: int, pool: "WorkerPool", *, replacing: str | None = None) -> None:
        self.number = number
        self.pool = pool
        self.ctl: socket.socket | None = None
        self.pid: int | None = None
        self.cpu: int | None = None  # the CPU it keeps its threads on (milter.cpu_affinity), None: any
        self.state = STARTING
        self.idle: list[socket.socket] = []
        self.slots = 0  # slots made (idle + busy)
        self.busy = 0
        self.reason: str | None = None  # why the milter stopped it: "overran", "retired"
        self.cause = ""  # what the log line says about its end
        self.guilty: socket.socket | None = None  # the slot whose message overran
        self.ended = False  # its end was accounted for (logged, replaced)
        self.token = 0
        self.problem = ""  # why it could not start
        self.replacing = replacing  # the reason its predecessor ended, until it is ready


# --- a pool: the workers of one configuration ----------------------------------------------------

class WorkerPool:
    """N workers for one Config; analyse() is what end of message calls."""

    def __init__(self, supervisor: "Supervisor", config: Config, count: int, generation: int) -> None:
        self.supervisor = supervisor
        self.config = config
        self.count = count
        self.generation = generation
        self.max_slots = max(MIN_SLOTS, -(-TOTAL_SLOTS // count))
        self.workers: list[_Worker] = []
        self._cond = threading.Condition(threading.Lock())
        self._in_use = 0  # analyses in progress (busy slots of all workers)
        self.started = False
        self.retired = False
        self.closed = False
        self.restarts: collections.deque[float] = collections.deque(maxlen=16)

    @property
    def active(self) -> bool:
        """Serving new messages (started, not replaced by a reload, not closed)."""
        return self.started and not (self.retired or self.closed)

    def spec(self, number: int) -> bytes:
        """What worker `number` is started with."""
        return pickle.dumps(WorkerSpec(worker=number, generation=self.generation, config=self.config,
                                       metrics=self.supervisor.metrics is not None,
                                       cpu_affinity=self.supervisor.cpu_affinity),
                            protocol=pickle.HIGHEST_PROTOCOL)

    # --- life ---------------------------------------------------------------------------------
    def start(self, timeout: float = START_SECONDS) -> "WorkerPool":
        """Start the workers and wait until each has built its engine; WorkerStartError if not."""
        for number in range(1, self.count + 1):
            w = _Worker(number, self)
            with self._cond:
                self.workers.append(w)
            self.supervisor.spawn(self, w)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                failed = [w for w in self.workers if w.state == DEAD]
                if failed:
                    problem = failed[0].problem or failed[0].cause or "ended before it was ready"
                    break
                if all(w.state == READY for w in self.workers):
                    problem = ""
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    problem = f"not ready after {timeout:g} s"
                    break
                self._cond.wait(min(remaining, 0.5))
        if problem:
            self.close()
            raise WorkerStartError(f"analysis worker could not start: {problem}")
        self.started = True
        self.supervisor.pool_started(self)
        return self

    def retire(self) -> None:
        """Replaced by a new pool (SIGHUP): close once the analyses it holds are done."""
        with self._cond:
            self.retired = True
            idle = self._in_use == 0
        self.supervisor.refresh_gauge()
        if idle:
            self.close()

    def _done_with(self, w: _Worker) -> bool:
        """One analysis less on w (under the lock); True when a retired pool can close now."""
        w.busy -= 1
        self._in_use -= 1
        return self.retired and self._in_use == 0

    def close(self) -> None:
        """Stop every worker: closing a control socket ends its worker."""
        with self._cond:
            if self.closed:
                return
            self.closed = True
            for w in self.workers:
                if w.state != DEAD:
                    w.state, w.reason = DEAD, w.reason or "retired"
                self._drop_idle(w)
                if w.ctl is not None:
                    self.supervisor.forget(w)
                    w.ctl.close()
            self._cond.notify_all()
        self.supervisor.refresh_gauge()

    # --- one message --------------------------------------------------------------------------
    def analyse(self, msg: CollectedMessage, envelope: Envelope, budget: float) -> tuple[Decision, bytes | None, bool]:
        """(decision, the message's bytes if they were built here, truncated) within budget seconds."""
        deadline = time.monotonic() + budget
        head = msg.head()
        truncated = msg.size > len(head) + msg.kept
        raw: bytes | None
        if msg.body.on_disk:
            raw, data, body_fd, body_len = None, head, msg.body.fileno(), msg.kept
        else:
            raw = data = head + msg.body.read()
            body_fd, body_len = None, 0
        env = codec.encode(envelope, Envelope)
        again = True  # one more try, for a message whose worker was killed for another's overrun
        while True:
            w, slot = self._acquire(deadline, budget)
            try:
                slot.settimeout(max(0.001, deadline - time.monotonic()))
                wire.send_request(slot, env, data, truncated=truncated, body_fd=body_fd, body_len=body_len)
                status, payload = wire.recv_reply(slot, deadline)
            except TimeoutError:
                self._overran(w, slot, budget)
                raise AnalysisTimeout(f"analysis exceeded {budget:g}s") from None
            except OSError:
                innocent = self._lost(w, slot)
                if innocent and again and time.monotonic() < deadline:
                    again = False
                    continue
                raise WorkerLost(f"analysis worker {w.number} (pid {w.pid}) ended during the analysis"
                                 + (f": {w.cause}" if w.cause else "")) from None
            self._release(w, slot)
            break
        if status != wire.OK:
            raise AnalysisFailed(payload.decode("utf-8", "replace"))
        decision, calls = codec.decode(payload, Decision)
        if calls:
            self.supervisor.replay(calls)
        return decision, raw, truncated

    def _acquire(self, deadline: float, budget: float) -> tuple[_Worker, socket.socket]:
        """An idle slot of the least busy worker, or a new one; wait for one until the deadline."""
        with self._cond:
            while True:
                if self.closed:  # retired by a reload before this message began its analysis
                    raise RuntimeReplaced()
                best = None
                for w in self.workers:
                    if w.state == READY and (best is None or w.busy < best.busy):
                        best = w
                if best is not None and best.busy < self.max_slots:
                    if best.idle:
                        slot = best.idle.pop()
                    else:
                        try:
                            slot = self._new_slot(best)
                        except OSError:  # it just died; the supervisor is told by its socket
                            best.state = DEAD
                            self._drop_idle(best)
                            continue
                        best.slots += 1
                    best.busy += 1
                    self._in_use += 1
                    return best, slot
                # A worker that ended but is not accounted for yet gets a replacement soon.
                if best is None and not any(w.state == STARTING or (w.state == DEAD and not w.ended)
                                            for w in self.workers):
                    raise WorkerLost("no analysis worker is running")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AnalysisTimeout(f"analysis exceeded {budget:g}s (waiting for a free analysis worker)")
                self._cond.wait(remaining)

    def _new_slot(self, w: _Worker) -> socket.socket:
        """A new socket pair; its other end goes to the worker, which gives it a thread.

        Called under the lock: the control socket is only ever closed under it too, so its
        descriptor cannot be closed and reused by another socket in between.
        """
        assert w.ctl is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            w.ctl.sendmsg([SLOT], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [theirs.fileno()]))])
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        return ours

    def _release(self, w: _Worker, slot: socket.socket) -> None:
        with self._cond:
            last = self._done_with(w)
            keep = w.state == READY and not self.closed
            if keep:
                w.idle.append(slot)
            self._cond.notify()
        if not keep:
            slot.close()
        if last:
            self.close()

    def _overran(self, w: _Worker, slot: socket.socket, budget: float) -> None:
        """Its message overran the budget: kill the worker (it is replaced) and forget the slot."""
        with self._cond:
            last = self._done_with(w)
            if w.state != DEAD:
                w.state, w.reason, w.guilty = DEAD, "overran", slot
                w.cause = f"killed: a message overran the {budget:g} s time budget"
                self._drop_idle(w)
                if w.pid is not None:
                    try:
                        os.kill(w.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            self._cond.notify_all()
        slot.close()
        if last:
            self.close()

    def _lost(self, w: _Worker, slot: socket.socket) -> bool:
        """The worker ended while it held this message; True if it was killed for another one."""
        with self._cond:
            last = self._done_with(w)
            innocent = w.reason == "overran" and w.guilty is not slot
            if w.state != DEAD:
                w.state = DEAD
                self._drop_idle(w)
            self._cond.notify_all()
        slot.close()
        if last:
            self.close()
        return innocent

    def _drop_idle(self, w: _Worker) -> None:
        """Close a worker's idle slots (under the lock)."""
        for s in w.idle:
            s.close()
        w.idle = []

    # --- for the supervisor ---------------------------------------------------------------
    def ready_count(self) -> int:
        with self._cond:
            return sum(1 for w in self.workers if w.state == READY)

    def changed(self) -> None:
        with self._cond:
            self._cond.notify_all()


# --- the supervisor: one per milter process --------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class _Respawn:
    due: float
    worker: _Worker


class Supervisor:
    """Watches the zygote and every worker's control socket; starts, accounts and replaces workers.

    Its thread is the only reader of those sockets. A worker's end is accounted for once, when
    the zygote reports it (with its wait status and CPU time), or when its control socket
    closes if no report can come (it never said it started, or its zygote was lost).
    """

    def __init__(self, zygote: Zygote, factory: EngineFactory, metrics: Any = None, *,
                 cpu_affinity: str = "none") -> None:
        self.zygote: Any = zygote
        self.factory = factory
        self.metrics = metrics
        self.cpu_affinity = cpu_affinity  # as the milter started: worker.pin
        self._lock = threading.Lock()
        self._by_fd: dict[int, _Worker] = {}
        self._by_pid: dict[int, _Worker] = {}
        self._by_token: dict[int, _Worker] = {}
        self._unreported: set[_Worker] = set()  # workers whose end no zygote will report
        # Ends reported before the worker's "started" was read (one that failed at once).
        self._early_exits: dict[int, tuple[int, float]] = {}
        self._tokens = 0
        self._pools: list[WorkerPool] = []
        self._respawns: list[_Respawn] = []
        self._exited_cpu = 0.0
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="otpguard-workers", daemon=True)
        self._thread.start()
        if metrics is not None:
            metrics.set_worker_cpu_source(self.worker_cpu_seconds)

    # --- called by pools and the server (any thread) ------------------------------------------
    def pool(self, config: Config, count: int, generation: int) -> WorkerPool:
        """A started pool of count workers for config (WorkerStartError if they cannot start)."""
        pool = WorkerPool(self, config, count, generation)
        with self._lock:
            self._pools.append(pool)
        return pool.start()

    def spawn(self, pool: WorkerPool, worker: _Worker) -> None:
        """Ask the zygote for this worker of pool."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with self._lock:
            self._tokens += 1
            worker.token = self._tokens
            worker.ctl = ours
            self._by_token[worker.token] = worker
            self._by_fd[ours.fileno()] = worker
        try:
            self.zygote.spawn(worker.token, pool.spec(worker.number), [theirs.fileno()])
        except OSError as exc:
            worker.problem = f"the zygote cannot be reached: {exc}"
            self._gone(worker)
        finally:
            theirs.close()
        self._wake()

    def forget(self, w: _Worker) -> None:
        """Stop watching a worker's control socket (its pool is about to close it)."""
        with self._lock:
            if w.ctl is not None:
                self._by_fd.pop(w.ctl.fileno(), None)
        self._wake()

    def pool_started(self, pool: WorkerPool) -> None:
        logs.event("workers", count=pool.count, generation=pool.generation, pids=[w.pid for w in pool.workers],
                   cpus=["any" if w.cpu is None else w.cpu for w in pool.workers], slots_per_worker=pool.max_slots)
        self.refresh_gauge()

    def refresh_gauge(self) -> None:
        """otpguard_workers: ready workers of the pools that serve new messages."""
        with self._lock:
            self._pools = [p for p in self._pools if not p.closed]
            pools = [p for p in self._pools if p.active]
        if self.metrics is not None:
            self.metrics.workers_running(sum(p.ready_count() for p in pools))

    def replay(self, calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> None:
        """Metric calls the engine made in a worker, made again on the milter's Metrics."""
        metrics = self.metrics
        if metrics is None:
            return
        for name, args, kwargs in calls:
            method = None if name.startswith("_") else getattr(metrics, name, None)
            if callable(method):
                try:
                    method(*args, **(kwargs or {}))
                except Exception:  # noqa: BLE001 - a metric must never fail a message
                    logs.event("metric_replay_failed", logging.DEBUG, metric=name)

    def worker_cpu_seconds(self) -> float:
        """CPU seconds used by every worker so far (those that ended: from the zygote's reports)."""
        with self._lock:
            total = self._exited_cpu
            pids = list(self._by_pid)
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / _CLK_TCK
            except (OSError, IndexError, ValueError):
                continue
        return total

    # --- the supervisor's thread ------------------------------------------------------------------
    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def stop(self) -> None:
        """At shutdown, once the pools are closed and before the zygote is: the thread ends.
        Woken after the zygote closed, it would poll a closed socket (workers_supervisor_error
        every half second) or take the zygote for lost and fork another."""
        self._stopping = True
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(STOP_SECONDS)

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001 - the supervisor must outlive any surprise
                logs.event("workers_supervisor_error", logging.ERROR, problem=f"{type(exc).__name__}: {exc}")
                time.sleep(0.5)

    def _step(self) -> None:
        with self._lock:
            fds = list(self._by_fd)
            due = min((r.due for r in self._respawns), default=None)
        poller = select.poll()
        for fd in (self.zygote.fileno(), self._wake_r.fileno(), *fds):
            poller.register(fd, select.POLLIN)
        timeout = None if due is None else max(0.0, due - time.monotonic()) * 1000
        for fd, _ in poller.poll(timeout):
            if fd == self._wake_r.fileno():
                try:
                    self._wake_r.recv(4096)
                except OSError:
                    pass
            elif fd == self.zygote.fileno():
                self._from_zygote(self.zygote.receive())
            else:
                with self._lock:
                    w = self._by_fd.get(fd)
                if w is not None:
                    self._from_worker(w)
        self._respawn_due()

    def _from_worker(self, w: _Worker) -> None:
        assert w.ctl is not None
        try:
            data = w.ctl.recv(1 << 16)
        except OSError:
            data = b""
        if not data:  # it ended (or is ending)
            with self._lock:
                self._by_fd.pop(w.ctl.fileno(), None)
                unreported = w.pid is None or w in self._unreported
            self._mark_dead(w)
            if unreported:
                self._ended(w, None, 0.0)
            return
        self._handle(w, data)

    def _drain(self, w: _Worker) -> None:
        """Read what an ended worker said last (why it failed) before its end is accounted for:
        the zygote's report of its exit can come before the supervisor read its socket."""
        if w.ctl is None:
            return
        while True:
            try:
                data = w.ctl.recv(1 << 16, socket.MSG_DONTWAIT)
            except OSError:
                return
            if not data:
                return
            self._handle(w, data)

    def _handle(self, w: _Worker, data: bytes) -> None:
        """One message from a worker's control socket."""
        kind, *args = pickle.loads(data)
        if kind == "started":
            w.pid, w.cpu = int(args[0]), args[1]
            with self._lock:
                self._by_pid[w.pid] = w
                early = self._early_exits.pop(w.pid, None)
                if early is not None:
                    self._by_pid.pop(w.pid, None)
            if early is not None:
                self._drain(w)
                self._mark_dead(w)
                self._ended(w, *early)
        elif kind == "ready":
            with w.pool._cond:
                if w.state == STARTING:
                    w.state = READY
                w.pool._cond.notify_all()
            if w.replacing:
                logs.event("worker_started", worker=w.number, pid=w.pid, generation=w.pool.generation,
                           replacing=w.replacing)
                w.replacing = None
            self.refresh_gauge()
        elif kind == "failed":
            w.problem = str(args[0])
            logs.event("worker_failed", logging.ERROR, worker=w.number, pid=w.pid, problem=w.problem)

    def _from_zygote(self, report: tuple[Any, ...] | None) -> None:
        if report is None:
            self._zygote_lost()
            return
        kind, *args = report
        if kind == "exited":
            pid, status, cpu = int(args[0]), int(args[1]), float(args[2])
            with self._lock:
                w = self._by_pid.pop(pid, None)
                self._exited_cpu += cpu
                if w is None and len(self._early_exits) < 1024:
                    self._early_exits[pid] = (status, cpu)
            if w is not None:
                self._drain(w)
                self._mark_dead(w)
                self._ended(w, status, cpu)
        elif kind == "spawn_failed":
            with self._lock:
                w = self._by_token.get(args[0]) if args[0] is not None else None
            if w is not None:
                w.problem = f"the zygote could not start it: {args[1]}"
                self._gone(w)

    def _gone(self, w: _Worker) -> None:
        """A worker that never ran."""
        with self._lock:
            if w.ctl is not None:
                self._by_fd.pop(w.ctl.fileno(), None)
        self._mark_dead(w)
        self._ended(w, None, 0.0)

    def _mark_dead(self, w: _Worker) -> None:
        pool = w.pool
        with pool._cond:
            if w.state != DEAD:
                w.state = DEAD
                pool._drop_idle(w)
            pool._cond.notify_all()
        self.refresh_gauge()

    def _ended(self, w: _Worker, status: int | None, cpu: float) -> None:
        """A worker process ended: say why, and replace it if its pool still serves."""
        pool = w.pool
        reason = w.reason if w.reason in RESTART_REASONS else "died"
        fresh = None
        with pool._cond:
            if w.ended:
                return
            w.ended = True
            if w.ctl is not None:
                with self._lock:
                    self._by_fd.pop(w.ctl.fileno(), None)
                    self._by_token.pop(w.token, None)
                    self._unreported.discard(w)
                w.ctl.close()  # under the pool's lock: see WorkerPool._new_slot
            retired = w.reason == "retired" or pool.closed
            if not retired and pool.active:
                # In the same breath as the end: a message waiting for a worker sees one coming.
                fresh = _Worker(w.number, pool, replacing=reason)
                pool.workers[pool.workers.index(w)] = fresh
            pool._cond.notify_all()
        if retired:
            logs.event("worker_stopped", logging.DEBUG, worker=w.number, pid=w.pid, generation=pool.generation,
                       cpu_seconds=round(cpu, 3))
            return
        logs.event("worker_lost", logging.WARNING, worker=w.number, pid=w.pid, generation=pool.generation,
                   cause=w.cause or w.problem or _describe_status(status), replaced="yes" if fresh else "no")
        if fresh is None:  # a pool still starting fails as a whole (WorkerPool.start)
            return
        if self.metrics is not None:
            self.metrics.worker_replaced(reason)
        now = time.monotonic()
        pool.restarts.append(now)
        recent = sum(1 for t in pool.restarts if now - t < RESTART_WINDOW)
        pause = 0.0
        if recent > RESTARTS_WITHOUT_PAUSE:
            pause = min(MAX_RESPAWN_PAUSE, 0.5 * 2 ** (recent - RESTARTS_WITHOUT_PAUSE - 1))
        if pause:
            logs.event("worker_restart_paused", logging.WARNING, worker=w.number, seconds=pause,
                       restarts=recent, window_seconds=RESTART_WINDOW)
            with self._lock:
                self._respawns.append(_Respawn(due=now + pause, worker=fresh))
            self._wake()
        else:
            self.spawn(pool, fresh)

    def _respawn_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [r for r in self._respawns if r.due <= now]
            self._respawns = [r for r in self._respawns if r.due > now]
        for r in due:
            if r.worker.pool.active:
                self.spawn(r.worker.pool, r.worker)
            else:  # its pool was replaced meanwhile: nothing to start, nothing to wait for
                r.worker.ended = True
                self._mark_dead(r.worker)

    def _zygote_lost(self) -> None:
        """The zygote ended (killed by hand, the OOM killer): fork a new one to keep replacing."""
        old = self.zygote
        logs.event("zygote_lost", logging.ERROR, pid=old.pid, note="forking a new one from the milter process")
        try:
            os.waitpid(old.pid, os.WNOHANG)
        except ChildProcessError:
            pass
        old.close()
        with self._lock:
            # Its workers keep serving (their parent is now init); their ends come unreported.
            self._unreported.update(self._by_pid.values())
            self._by_pid.clear()
        try:
            self.zygote = Zygote.start(self.factory, threaded=True)
        except Exception as exc:  # noqa: BLE001
            logs.event("zygote_failed", logging.ERROR, problem=f"{type(exc).__name__}: {exc}",
                       note="workers that end can no longer be replaced: restart otpguard")
            self.zygote = _NoZygote()


class _NoZygote:
    """Stands in for a zygote that could not be forked again: nothing to hear, nothing to start."""

    pid = 0

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()

    def fileno(self) -> int:
        return self._r.fileno()

    def spawn(self, token: int, spec: bytes, fds: list[int]) -> None:
        raise OSError("no zygote")

    def receive(self) -> None:
        return None

    def close(self) -> None:
        pass


def _describe_status(status: int | None) -> str:
    if status is None:
        return "ended"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by {name}"
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return f"wait status {status}"


_CLK_TCK = os.sysconf("SC_CLK_TCK")
