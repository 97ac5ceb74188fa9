"""An analysis worker process: one Engine, one thread per slot, one message per slot at a time.

The zygote (mta/zygote.py) forks it with the Config the milter validated and a control socket;
the Config is never read again from disk here, so a worker cannot judge mail by a file that
changed after the milter loaded it. Over the control socket the worker says it started (its
pid) and is ready (its engine built), or why it failed; the milter sends it slots (the worker's
ends of socket pairs, mta/wire.py), one thread each. Several slots let one worker wait on DNS
for some messages while it analyses others, as the milter's threads did before.

The worker ignores SIGINT, SIGTERM and SIGHUP: a Ctrl-C in a terminal or systemd's stop reach
the whole process group, and the milter must finish the messages in flight first. It ends when
the milter closes its control socket (a retired pool after SIGHUP, the milter stopping or
gone), and is killed by the milter when it overruns the time budget.
"""
from __future__ import annotations

import array
import os
import pickle
import socket
import threading
from dataclasses import dataclass
from typing import Any, Callable

from ..config import Config, cpu_list
from ..core.model import Decision, Envelope
from ..ops import logs
from . import codec, wire

EngineFactory = Callable[[Config, Any], Any]  # (config, metrics) -> engine, like serve._build_engine
CONTROL_BYTES = 1 << 16
SLOT = b"slot"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSpec:
    """What a worker is started with (pickled through the zygote)."""

    worker: int  # the worker's number in its pool, from 1
    generation: int  # the pool's number: 1 at start, +1 per reload
    config: Config
    metrics: bool  # report the engine's metric calls back to the milter
    cpu_affinity: str = "none"  # milter.cpu_affinity as the milter started with it (see pin)


def control_message(kind: str, *args: Any) -> bytes:
    """A message on a control socket (both directions, small and rare: pickle is fine)."""
    return pickle.dumps((kind, *args), protocol=pickle.HIGHEST_PROTOCOL)


class CallRecorder:
    """The worker's stand-in for the milter's Metrics.

    The engine reports to it (DNS query latency, ...) as it would to Metrics. Calls made while
    a slot analyses a message travel back with that message's reply and are replayed on the
    milter's Metrics, so every figure lands in the one registry the milter serves, under the
    same names. Calls from outside a message (none today) are dropped.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("_"):
            raise AttributeError(name)
        local = self._local

        def record(*args: Any, **kwargs: Any) -> None:
            calls = getattr(local, "calls", None)
            if calls is not None:
                calls.append((name, args, kwargs))

        return record

    def begin(self) -> None:
        self._local.calls = []

    def end(self) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        calls, self._local.calls = self._local.calls, None
        return calls or []


def serve_slot(sock: socket.socket, engine: Any, recorder: CallRecorder | None) -> None:
    """Answer messages on one slot until the milter closes it."""
    with sock:
        while True:
            try:
                req = wire.recv_request(sock)
            except OSError:
                return
            if req is None:
                return
            try:
                raw = req.data
                if req.body_fd is not None:
                    try:
                        raw += wire.read_body(req.body_fd, req.body_len)
                    finally:
                        os.close(req.body_fd)
                envelope, _ = codec.decode(req.envelope, Envelope)
                if recorder is not None:
                    recorder.begin()
                try:
                    decision = engine.analyse(raw, envelope, truncated=req.truncated)
                finally:
                    calls = recorder.end() if recorder is not None else None
                status, payload = wire.OK, codec.encode(decision, Decision, calls)
            except Exception as exc:  # noqa: BLE001 - the milter answers it per on_error
                status, payload = wire.FAILED, f"{type(exc).__name__}: {exc}".encode("utf-8", "backslashreplace")
            try:
                wire.send_reply(sock, status, payload)
            except OSError:
                return  # the milter went away


def pin(number: int, setting: str) -> int | None:
    """Keep this worker's threads on one CPU per milter.cpu_affinity; the CPU, or None (any).

    The reason is the one for the milter process (serve.pin_cpus): the threads of one Python
    process pass the GIL around, and a hand-off to a thread on another CPU costs a cross-CPU
    wake-up. "auto" gives worker 1 the lowest CPU, worker 2 the next, and so on round the
    CPUs the service may use (the milter process keeps the highest: worker 1, the busiest as
    the least busy worker is taken first, does not share it on a host of two or more CPUs).
    A list of CPUs is shared out the same way; "none" pins nothing. Call it before any thread
    starts: threads inherit it.
    """
    try:
        wanted = cpu_list(setting)
        allowed = sorted(os.sched_getaffinity(0))
    except (ValueError, OSError, AttributeError):
        return None
    cpus = allowed if wanted is None else [c for c in wanted or () if c in allowed]
    if not cpus or (wanted is None and len(allowed) < 2):
        return None
    cpu = cpus[(number - 1) % len(cpus)]
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:  # e.g. a seccomp filter: the milter process has said so in its log
        return None
    return cpu


def run(ctl: socket.socket, spec: WorkerSpec, factory: EngineFactory) -> int:
    """The worker's life; returns its exit status."""
    ctl.send(control_message("started", os.getpid(), pin(spec.worker, spec.cpu_affinity)))
    config = spec.config
    logs.setup(config.logging.level, config.logging.format, priority_prefix=config.logging.priority_prefix)
    recorder = CallRecorder() if spec.metrics else None
    try:
        engine = factory(config, recorder)
    except Exception as exc:  # noqa: BLE001 - reported to the milter, which logs it
        ctl.send(control_message("failed", f"{type(exc).__name__}: {exc}"))
        return 1
    ctl.send(control_message("ready"))
    while True:
        try:
            data, ancillary, _, _ = ctl.recvmsg(CONTROL_BYTES, socket.CMSG_SPACE(array.array("i").itemsize))
        except OSError:
            return 0
        if not data:
            return 0  # the milter closed our control socket: retired, stopping, or gone
        fds = [fd for level, kind, payload in ancillary
               if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
               for fd in array.array("i", payload[: len(payload) - len(payload) % 4])]
        if data == SLOT and len(fds) == 1:
            slot = socket.socket(fileno=fds[0])
            threading.Thread(target=serve_slot, args=(slot, engine, recorder), daemon=True,
                             name=f"otpguard-slot-{slot.fileno()}").start()
        else:
            for fd in fds:
                os.close(fd)
