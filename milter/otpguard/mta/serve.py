"""`otpguard serve`: run the milter.

libmilter runs in a secondary thread and the main thread keeps SIGHUP, SIGTERM and SIGINT.
This matters: libmilter's own signal thread treats SIGHUP like SIGTERM (it stops the milter),
but it only blocks those signals in the thread that calls smfi_main and the threads that one
starts. The kernel offers a process-directed signal to the main thread first, which does not
block them, so our handlers get them: SIGHUP reloads the config, SIGTERM/SIGINT stop
accepting, let messages in flight finish, and exit.
"""
from __future__ import annotations

import argparse
import grp
import logging
import os
import pwd
import signal
import socket
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..ops import logs
from . import pool, runtime, sockets
from ..config import POSTFIX_QUEUE_DIRECTORY, Config, ConfigError, cpu_list, load_config, locate_config

DRAIN_SECONDS = 30.0  # longest wait for messages in flight after SIGTERM
POSTFIX_HINT = """otpguard is listening on {socket}. To filter mail with it, add to Postfix's main.cf
(see deploy/postfix/main.cf.snippet) and run `postfix reload`:
    milter_protocol = 6
    milter_default_action = tempfail
    smtpd_milters = {spelling}
    non_smtpd_milters = $smtpd_milters
{note}Then check the whole path with `otpguard doctor --config {config}`.
Stop with Ctrl-C (SIGTERM); reload the configuration with SIGHUP."""
RELATIVE_NOTE = """(relative to Postfix's queue directory: right whether smtpd and cleanup run chrooted or not)
"""
OUTSIDE_NOTE = """(outside Postfix's queue directory: invisible to a chrooted smtpd or cleanup, Debian's default;
 the default socket unix:/var/spool/postfix/otpguard/otpguard.sock works either way)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `otpguard serve`."""
    parser.add_argument("--config", metavar="FILE",
                        help="configuration file (TOML); default: $OTPGUARD_CONFIG, else "
                             "/etc/otpguard/otpguard.toml, else the packaged default")
    parser.add_argument("--socket", metavar="SPEC",
                        help="milter socket in Postfix spelling, unix:/path or inet:HOST:PORT "
                             "(overrides milter.socket)")
    parser.add_argument("--metrics", metavar="HOST:PORT",
                        help="serve Prometheus /metrics here (overrides metrics.listen; enables metrics)")


def _fail_config(exc: ConfigError) -> int:
    print(f"otpguard: configuration error in {exc.file}: "
          + (f"{exc.key}: {exc.problem}" if exc.key else exc.problem), file=sys.stderr)
    return 2


def _build_engine(config: Config, metrics: Any = None) -> Any:
    from ..engine import Engine

    return Engine(config, on_dns_query=metrics.dns_query if metrics is not None else None)


# A message that takes the analysis down its common paths (a brand claim, HTML with a style
# sheet, a link, a phone number, a lure): analysed once at start, with no DNS.
WARM_UP_MESSAGE = (
    b"From: \"Amazon\" <notice@warm-up.invalid>\r\nTo: user@warm-up.invalid\r\n"
    b"Subject: Your Amazon account is on hold\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n\r\n"
    b"<html><head><style>.x{color:#fff}</style></head><body><p>Your account is locked. Verify now "
    b"at <a href=\"https://warm-up.invalid/login\">amazon.com</a> or call +1 206 555 0100.</p>"
    b"<p class=\"x\">hidden</p></body></html>\r\n")


def _warm_up(config: Config) -> Any:
    """Pay the analysis's first-use costs (lazy imports, compiled vocabularies, caches: about
    0.2 s) once, before the zygote is forked, so that neither the first message nor a worker
    started later pays them. No DNS: verification is off for this one analysis. Returns the
    decision, or None when it failed (a start is never refused for it)."""
    from ..core.model import Envelope
    from ..engine import Engine

    try:
        return Engine(config, verify=False).analyse(WARM_UP_MESSAGE, Envelope())
    except Exception:  # noqa: BLE001 - the real analyses will meet and report any such error
        return None


def _open_store(config: Config, metrics: Any) -> Any:
    """The counter store for burst detection ([state])."""
    from ..ops.state import open_store

    def state_error() -> None:
        if metrics is not None:
            metrics.record_error("state")

    return open_store(config.state, on_error=state_error)


def _socket_path(spec: str) -> Path | None:
    return Path(spec[5:]) if spec.startswith("unix:") else None


def _make_socket_dir(directory: Path, group: str) -> None:
    """Create the socket's directory when it is missing: 0750 with group milter.socket_group
    (postfix), so Postfix can reach the socket and other users cannot.

    Postfix's queue directory belongs to root: the systemd unit creates otpguard's directory
    there (ExecStartPre); a root `make run` creates it here. A missing queue directory is not
    created: Postfix is not installed, or uses another one.
    """
    if directory.is_dir():
        return
    queue = Path(POSTFIX_QUEUE_DIRECTORY)
    if (directory == queue or queue in directory.parents) and not queue.is_dir():
        raise OSError(f"{queue} does not exist (is Postfix installed? the default socket lives in its queue "
                      "directory; set milter.socket or --socket to another path)")
    directory.mkdir(parents=True)
    mode = 0o755
    if group:
        try:
            os.chown(directory, -1, int(group) if group.isdigit() else grp.getgrnam(group).gr_gid)
            mode = 0o750
        except (KeyError, PermissionError) as exc:
            logs.event("socket_dir_group_unchanged", logging.WARNING, directory=str(directory), group=group,
                       problem=str(exc))
    os.chmod(directory, mode)  # mkdir's mode goes through the umask


def _prepare_unix_socket(path: Path, group: str = "") -> None:
    """Create the parent directory; remove a stale socket, refuse to steal a live one."""
    _make_socket_dir(path.parent, group)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise OSError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # nobody listens: a leftover from a crash
        else:
            raise OSError(f"{path} is in use by another running milter")
        finally:
            probe.close()


def _check_inet_free(spec: str) -> None:
    """Fail early with the OS's words ("Address already in use") instead of libmilter's."""
    host, _, port = spec.partition(":")[2].rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as libmilter does
        s.bind((host, int(port)))


def _set_socket_permissions(path: Path, mode: str, owner: str, group: str) -> None:
    """chmod/chown the unix socket so Postfix (user postfix) can connect."""
    os.chmod(path, int(mode, 8))
    try:
        uid = -1 if not owner else (int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid)
        gid = -1 if not group else (int(group) if group.isdigit() else grp.getgrnam(group).gr_gid)
        if uid != -1 or gid != -1:
            os.chown(path, uid, gid)
    except (KeyError, PermissionError) as exc:
        # Still serving: the socket keeps its mode and our own user and group. Say why Postfix
        # may not be able to connect instead of dying at start.
        logs.event("socket_owner_unchanged", logging.WARNING, socket=str(path), owner=owner, group=group,
                   problem=str(exc))


class Server:
    """The running milter: runtime swaps, signals, shutdown."""

    def __init__(self, config: Config, socket_spec: str, metrics: Any, metrics_listen: str | None,
                 zygote: Any = None, cpus: int = 1) -> None:
        self.config = config
        self.socket_spec = socket_spec
        self.metrics = metrics
        self.metrics_listen = metrics_listen
        self.stop_requested = threading.Event()
        self.reload_requested = threading.Event()
        self.error: BaseException | None = None
        self.listening = threading.Event()
        self._store: Any = None
        self._store_cfg: Any = None
        # Analysis worker processes (milter.workers > 1, mta/pool.py): the zygote forked at
        # start, the supervisor that starts and replaces workers, and the CPUs "auto" counts.
        self.zygote = zygote
        self.cpus = cpus
        self.supervisor: Any = None
        self.generation = 0

    # --- runtime ----------------------------------------------------------------------
    def install(self, config: Config) -> None:
        """Build engine and trackers for config first, then swap them in at once."""
        from ..ops.bursts import BurstTracker

        engine = _build_engine(config, self.metrics)
        store, store_cfg = self._store, self._store_cfg
        if config.bursts.enabled and (store is None or config.state != store_cfg):
            store, store_cfg = _open_store(config, self.metrics), config.state
        bursts = BurstTracker(store, config.bursts) if config.bursts.enabled else None
        workers = self._start_workers(config)
        try:
            old = runtime.get_runtime().pool
        except RuntimeError:
            old = None
        runtime.set_runtime(runtime.Runtime(config=config, engine=engine, metrics=self.metrics, bursts=bursts,
                                            pool=workers))
        if old is not None:
            old.retire()  # closes once the analyses it holds are done
        # The same [state] keeps its store across reloads: in-memory burst counts survive SIGHUP.
        self._store, self._store_cfg = store, store_cfg
        self.config = config

    def _start_workers(self, config: Config) -> Any:
        """A started pool of analysis workers for config, or None: analysis in this process."""
        count = pool.worker_count(config.milter, self.cpus)
        if self.zygote is None or count < pool.POOL_FROM:
            return None
        if self.supervisor is None:
            self.supervisor = pool.Supervisor(self.zygote, _build_engine, self.metrics,
                                              cpu_affinity=self.config.milter.cpu_affinity)
        self.generation += 1
        return self.supervisor.pool(config, count, self.generation)

    def worker_count(self) -> int:
        """Analysis processes in use (1: analysis in this process)."""
        workers = runtime.get_runtime().pool
        return workers.count if workers is not None else 1

    def reload(self) -> None:
        """SIGHUP: a new valid config replaces the old one; a bad one is logged and ignored."""
        path = self.config.path
        try:
            new = load_config(path)  # the [policy] list files are read again here too
            for key in ("socket", "cpu_affinity"):
                if getattr(new.milter, key) != getattr(self.config.milter, key):
                    logs.event("reload_notice", logging.WARNING, file=path,
                               note=f"milter.{key} changes take effect after a restart")
            if self.zygote is None and pool.worker_count(new.milter, self.cpus) >= pool.POOL_FROM:
                logs.event("reload_notice", logging.WARNING, file=path,
                           note="milter.workers: analysis moves to worker processes after a restart")
            self.install(new)
        except ConfigError as exc:
            logs.event("reload_failed", logging.ERROR, file=exc.file, key=exc.key, problem=exc.problem,
                       note="keeping the previous configuration")
            ok = False
        except Exception as exc:  # e.g. a state backend that cannot be built
            logs.event("reload_failed", logging.ERROR, file=path, problem=f"{type(exc).__name__}: {exc}",
                       note="keeping the previous configuration")
            ok = False
        else:
            logs.setup(new.logging.level, new.logging.format, priority_prefix=new.logging.priority_prefix)
            logs.event("reload", file=path)
            ok = True
        if self.metrics is not None:
            self.metrics.config_reloaded(ok)

    # --- libmilter thread -----------------------------------------------------------------
    def _on_listening(self) -> None:
        path = _socket_path(self.socket_spec)
        m = self.config.milter
        if path is not None:
            _set_socket_permissions(path, m.socket_mode, m.socket_owner, m.socket_group)
        elif m.tcp_nodelay:
            port = int(self.socket_spec.rpartition(":")[2])
            if sockets.set_listener_nodelay(port) == 0:
                logs.event("tcp_nodelay_failed", logging.WARNING, socket=self.socket_spec)
        self.listening.set()

    def _serve(self) -> None:
        from . import adapter

        try:
            adapter.run(self.socket_spec, timeout=self.config.milter.timeout_seconds,
                        on_listening=self._on_listening)
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.stop_requested.set()

    def _wake_listener(self) -> None:
        """Connect once to our own socket so libmilter's accept loop wakes up now."""
        path = _socket_path(self.socket_spec)
        try:
            if path is not None:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(1)
                    s.connect(str(path))
            else:
                host, _, port = self.socket_spec[5:].rpartition(":")
                socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=1).close()
        except OSError:
            pass  # already closed: nothing to wake

    def _stop_listener(self) -> None:
        """smfi_stop: close the listening socket, so no new MTA connections.

        libmilter's accept loop holds its lock while it waits up to 5 s (MI_CHK_TIME) in
        select(); smfi_stop needs that lock. A connection to our own socket ends the wait,
        so stopping takes milliseconds instead of seconds.
        """
        from . import adapter

        def stop() -> None:
            try:
                adapter.stop()
            except Exception as exc:
                logs.event("stop_failed", logging.WARNING, problem=repr(exc))

        stopper = threading.Thread(target=stop, name="otpguard-stop", daemon=True)
        stopper.start()
        for _ in range(50):
            stopper.join(0.1)
            if not stopper.is_alive():
                break
            self._wake_listener()

    def serve(self) -> int:
        """Run until SIGTERM/SIGINT (0) or a libmilter failure (1)."""

        def on_stop(signum: int, _frame: Any) -> None:
            self.stop_requested.set()

        def on_hup(signum: int, _frame: Any) -> None:
            self.reload_requested.set()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)
        worker = threading.Thread(target=self._serve, name="libmilter", daemon=True)
        worker.start()
        announced = False
        while not self.stop_requested.is_set():
            # Short waits keep the main thread responsive to signals.
            self.stop_requested.wait(0.2)
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload()
            if self.listening.is_set() and not announced:
                announced = True
                from .postfixcf import main_cf_spelling

                spelling = main_cf_spelling(self.socket_spec)
                logs.event("listening", socket=self.socket_spec, config=self.config.path,
                           workers=self.worker_count(), workers_setting=self.config.milter.workers,
                           postfix=f"smtpd_milters = {spelling}",
                           hint="add the lines of deploy/postfix/main.cf.snippet to Postfix's main.cf")
                if sys.stdout.isatty():  # `make run` in a terminal; services log only the event
                    note = (RELATIVE_NOTE if spelling != self.socket_spec
                            else OUTSIDE_NOTE if self.socket_spec.startswith("unix:") else "")
                    print(POSTFIX_HINT.format(socket=self.socket_spec, spelling=spelling, note=note,
                                              config=self.config.path), flush=True)
        if self.error is not None:
            logs.event("milter_failed", logging.ERROR, socket=self.socket_spec,
                       problem=f"{type(self.error).__name__}: {self.error}")
            return 1
        logs.event("stopping", in_flight=runtime.in_flight())
        self._stop_listener()
        deadline = time.monotonic() + DRAIN_SECONDS
        while runtime.in_flight() > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        left = runtime.in_flight()
        workers = runtime.get_runtime().pool
        if workers is not None:  # their messages are done: the workers and the zygote end now
            workers.close()
            if self.supervisor is not None:
                self.supervisor.stop()
            self.zygote.close()
        path = _socket_path(self.socket_spec)
        if path is not None:
            try:
                path.unlink()  # libmilter leaves its socket behind
            except OSError:
                pass
        logs.event("stopped", unfinished=left)
        return 0


def pin_cpus(spec: str) -> tuple[int, ...] | None:
    """Apply milter.cpu_affinity to every thread of this process; the CPUs used, or None.

    "auto" keeps the milter on one CPU: under the GIL one thread at a time runs Python, and
    libmilter's threads spread over several CPUs pay a cross-CPU wake-up for every hand-off
    of it (bench/milter_cpu.py measures the difference). Call it before starting threads:
    those started later inherit it, one started during the call might not.
    """
    wanted = cpu_list(spec)
    if wanted == ():
        return None

    def unchanged(problem: str) -> None:
        logs.event("cpu_affinity_unchanged", logging.WARNING, setting=spec, problem=problem)

    if not hasattr(os, "sched_setaffinity"):
        unchanged("this system cannot set CPU affinity")
        return None
    try:
        allowed = os.sched_getaffinity(0)
    except OSError as exc:
        unchanged(str(exc))
        return None
    if wanted is None:
        if len(allowed) < 2:
            return None
        # The highest-numbered CPU: CPU 0 usually takes more of the machine's interrupts.
        cpus = {max(allowed)}
    else:
        cpus = set(wanted) & allowed
        if not cpus:
            unchanged(f"none of these CPUs is available (available: {sorted(allowed)})")
            return None
        if cpus != set(wanted):
            logs.event("cpu_affinity_narrowed", logging.WARNING, setting=spec, using=sorted(cpus),
                       problem=f"not available: {sorted(set(wanted) - allowed)}")
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:  # a thread that ended meanwhile
            continue
        except OSError as exc:  # e.g. a seccomp filter that denies the call
            unchanged(str(exc))
            return None
    return tuple(sorted(cpus))


def run(args: argparse.Namespace) -> int:
    """Entry point of `otpguard serve`."""
    choice = locate_config(args.config)
    args.config = str(choice.path)
    try:
        config = load_config(choice.path)
    except ConfigError as exc:
        return _fail_config(exc)
    socket_spec = args.socket or config.milter.socket
    try:
        sockets.libmilter_spec(socket_spec)
    except ValueError as exc:
        key = "--socket" if args.socket else "milter.socket"
        print(f"otpguard: configuration error in {args.config if not args.socket else 'command line'}: "
              f"{key}: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.logging.level, config.logging.format, priority_prefix=config.logging.priority_prefix)
    logs.event("config", path=str(choice.path), source=choice.source)
    _warm_up(config)
    # Analysis worker processes are forked from a zygote made now, while this process has one
    # thread and every CPU it may use (the pinning below is for the milter process alone).
    usable = pool.usable_cpus()
    zygote = None
    if pool.worker_count(config.milter, usable) >= pool.POOL_FROM:
        from .zygote import Zygote

        try:
            zygote = Zygote.start(_build_engine)
        except OSError as exc:  # fork refused: no memory, a process limit
            print(f"otpguard: cannot start the analysis workers (milter.workers): {exc}", file=sys.stderr)
            return 1
    if (cpus := pin_cpus(config.milter.cpu_affinity)) is not None:
        logs.event("cpu_affinity", cpus=list(cpus), setting=config.milter.cpu_affinity)
    metrics = None
    metrics_listen = args.metrics or (config.metrics.listen if config.metrics.enabled else None)
    if metrics_listen:
        try:
            from ..ops.metrics import Metrics

            from ..core.pipeline import all_symbols

            metrics = Metrics(symbols=tuple(all_symbols()))
            from .quarantine import held_count

            metrics.set_quarantine_source(held_count)
            server = metrics.start_http(metrics_listen)
            logs.event("metrics", url=server.url)
        except ImportError:
            metrics = None
        except (OSError, ValueError) as exc:
            print(f"otpguard: cannot serve metrics on {metrics_listen}: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, ValueError) else 1
    srv = Server(config, socket_spec, metrics, metrics_listen, zygote=zygote, cpus=usable)
    try:
        srv.install(config)
    except ConfigError as exc:
        return _fail_config(exc)
    except Exception as exc:  # e.g. a state backend that cannot be set up
        print(f"otpguard: cannot start with {args.config}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    path = _socket_path(socket_spec)
    try:
        if path is not None:
            _prepare_unix_socket(path, config.milter.socket_group)
        else:
            _check_inet_free(socket_spec)
    except OSError as exc:
        print(f"otpguard: cannot use socket {socket_spec}: {exc}", file=sys.stderr)
        return 1
    from ..ops.dnsprobe import DnsProbe

    # At start and every auth.probe_interval_seconds: can the resolver see the brands at all?
    DnsProbe(lambda: srv.config, metrics).start()
    return srv.serve()
