"""The zygote: a copy of the milter made at start, before any thread exists, that forks the workers.

A worker must be the copy of a single-threaded process. Forked from the running milter
(libmilter's threads, the metrics server, locks that another thread holds at that instant), a
child may inherit a lock that nobody will ever release. The zygote is that copy, made once: it
has the program loaded (its pages are shared copy-on-write with every worker it forks, and
frozen for the garbage collector so they stay shared) and it holds nothing. It does three
things:
  - fork a worker when the milter asks, with the worker's spec and control socket;
  - reap its workers and tell the milter how each one ended (wait status, CPU seconds);
  - end with the milter: when the milter's end of its socket closes (the milter stopped or
    died), it gives its workers a moment to notice the same, kills the rest, and exits.
It ignores SIGINT, SIGTERM and SIGHUP, like the workers: only the milter decides.
"""
from __future__ import annotations

import array
import gc
import os
import pickle
import select
import signal
import socket
import threading
import time
from typing import Any

from . import worker

CONTROL_BYTES = 1 << 20  # a spawn request carries the pickled Config (a few KiB)
IGNORED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
WORKER_EXIT_GRACE = 2.0  # seconds the workers get to exit on their own once the milter is gone
# Imported before the zygote freezes its heap, so every worker shares them instead of
# importing its own copy on its first message.
PRELOAD = ("otpguard.engine", "otpguard.auth.verify", "otpguard.auth.dnsio", "otpguard.auth.authresults")


class Zygote:
    """The milter's handle on its zygote process."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock = sock
        self.pid = pid

    @classmethod
    def start(cls, factory: worker.EngineFactory, *, threaded: bool = False) -> "Zygote":
        """Fork the zygote. Call it while this process has a single thread.

        threaded=True is the recovery path when the zygote was lost (killed by hand or by the
        OOM killer) while the milter runs: forked from a threaded process, the new zygote
        touches little besides what fork resets for it (Python's import and logging locks), and
        the alternative is a milter that can no longer replace a worker.
        """
        if not threaded and threading.active_count() != 1:
            raise RuntimeError("the zygote must be forked before any thread starts")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # the zygote
            code = 1
            try:
                ours.close()
                code = _serve(theirs, factory)
            finally:
                os._exit(code)
        theirs.close()
        return cls(ours, pid)

    def fileno(self) -> int:
        return self.sock.fileno()

    def spawn(self, token: int, spec: bytes, fds: list[int]) -> None:
        """Ask for a worker (spec: a pickled worker.WorkerSpec; fds: its control socket)."""
        self.sock.sendmsg([worker.control_message("spawn", token, spec)],
                          [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])

    def receive(self) -> tuple[Any, ...] | None:
        """The zygote's next report ("exited", pid, wait status, cpu seconds) or ("spawn_failed",
        token, reason); None when the zygote is gone."""
        try:
            data = self.sock.recv(CONTROL_BYTES)
        except OSError:
            return None
        return pickle.loads(data) if data else None

    def close(self) -> None:
        """Close our end: the zygote stops its workers and exits."""
        self.sock.close()


def _serve(sock: socket.socket, factory: worker.EngineFactory) -> int:
    for sig in IGNORED_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    for name in PRELOAD:
        __import__(name)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    # SIGCHLD wakes the poll below through the pipe (the handler itself has nothing to do).
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    gc.freeze()
    children: set[int] = set()
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        for fd, _ in events:
            if fd == wake_r:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                _reap(sock, children)
                continue
            data, ancillary, _, _ = sock.recvmsg(CONTROL_BYTES, socket.CMSG_SPACE(16 * array.array("i").itemsize))
            fds = [fd for level, kind, payload in ancillary
                   if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
                   for fd in array.array("i", payload[: len(payload) - len(payload) % 4])]
            if not data:
                _stop(children)
                return 0
            token = None
            try:
                kind, token, spec = pickle.loads(data)
                if kind != "spawn" or len(fds) != 1:
                    raise ValueError(f"unexpected request {kind!r} with {len(fds)} descriptors")
                pid = os.fork()
            except Exception as exc:  # noqa: BLE001 - reported; the zygote keeps serving
                _report(sock, "spawn_failed", token, f"{type(exc).__name__}: {exc}")
            else:
                if pid == 0:  # the worker
                    code = 1
                    try:
                        signal.set_wakeup_fd(-1)
                        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                        os.close(wake_r)
                        os.close(wake_w)
                        sock.close()
                        code = worker.run(socket.socket(fileno=fds[0]), pickle.loads(spec), factory)
                    finally:
                        os._exit(code)
                children.add(pid)
            for fd in fds:
                os.close(fd)


def _report(sock: socket.socket, *message: Any) -> None:
    try:
        sock.send(worker.control_message(*message))
    except OSError:
        pass  # the milter is gone; _serve sees it next


def _reap(sock: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)
        _report(sock, "exited", pid, status, usage.ru_utime + usage.ru_stime)


def _stop(children: set[int]) -> None:
    """The milter is gone: its workers see their sockets close too; kill what is left."""
    deadline = time.monotonic() + WORKER_EXIT_GRACE
    while children and time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid:
            children.discard(pid)
        else:
            time.sleep(0.02)
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in list(children):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
