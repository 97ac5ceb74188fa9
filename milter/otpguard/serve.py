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

from . import logs
from .config import Config, ConfigError, load_config

DRAIN_SECONDS = 30.0  # longest wait for messages in flight after SIGTERM


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `otpguard serve`."""
    parser.add_argument("--config", required=True, metavar="FILE", help="configuration file (TOML)")
    parser.add_argument("--socket", metavar="SPEC",
                        help="milter socket in Postfix spelling, unix:/path or inet:HOST:PORT "
                             "(overrides milter.socket)")
    parser.add_argument("--metrics", metavar="HOST:PORT",
                        help="serve Prometheus /metrics here (overrides metrics.listen; enables metrics)")


def _fail_config(exc: ConfigError) -> int:
    print(f"otpguard: configuration error in {exc.file}: "
          + (f"{exc.key}: {exc.problem}" if exc.key else exc.problem), file=sys.stderr)
    return 2


def _build_engine(config: Config) -> Any:
    from .engine import Engine

    return Engine(config)


def _build_bursts(config: Config, metrics: Any) -> Any:
    """A burst tracker on the configured state store, or None when bursts are off."""
    if not config.bursts.enabled:
        return None
    from .bursts import BurstTracker
    from .state import open_store

    def state_error() -> None:
        if metrics is not None:
            metrics.record_error("state")

    return BurstTracker(open_store(config.state, on_error=state_error), config.bursts)


def _socket_path(spec: str) -> Path | None:
    return Path(spec[5:]) if spec.startswith("unix:") else None


def _prepare_unix_socket(path: Path) -> None:
    """Create the parent directory; remove a stale socket, refuse to steal a live one."""
    path.parent.mkdir(parents=True, exist_ok=True)
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


def _set_socket_permissions(path: Path, mode: str, owner: str, group: str) -> None:
    """chmod/chown the unix socket so Postfix (user postfix) can connect."""
    uid = -1 if not owner else (int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid)
    gid = -1 if not group else (int(group) if group.isdigit() else grp.getgrnam(group).gr_gid)
    if uid != -1 or gid != -1:
        os.chown(path, uid, gid)
    os.chmod(path, int(mode, 8))


class Server:
    """The running milter: runtime swaps, signals, shutdown."""

    def __init__(self, config: Config, socket_spec: str, metrics: Any, metrics_listen: str | None) -> None:
        self.config = config
        self.socket_spec = socket_spec
        self.metrics = metrics
        self.metrics_listen = metrics_listen
        self.stop_requested = threading.Event()
        self.reload_requested = threading.Event()
        self.error: BaseException | None = None
        self.listening = threading.Event()

    # --- runtime ----------------------------------------------------------------------
    def install(self, config: Config) -> None:
        """Build engine and trackers for config first, then swap them in at once."""
        from . import adapter

        engine = _build_engine(config)
        bursts = _build_bursts(config, self.metrics)
        adapter.set_runtime(adapter.Runtime(config=config, engine=engine, metrics=self.metrics, bursts=bursts))
        self.config = config

    def reload(self) -> None:
        """SIGHUP: a new valid config replaces the old one; a bad one is logged and ignored."""
        path = self.config.path
        try:
            new = load_config(path)
            if new.milter.socket != self.config.milter.socket:
                logs.event("reload_notice", logging.WARNING, file=path,
                           note="milter.socket changes take effect after a restart")
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
            logs.setup(new.logging.level, new.logging.format)
            logs.event("reload", file=path)
            ok = True
        if self.metrics is not None:
            self.metrics.config_reloaded(ok)

    # --- libmilter thread -----------------------------------------------------------------
    def _on_listening(self) -> None:
        from . import adapter

        path = _socket_path(self.socket_spec)
        m = self.config.milter
        if path is not None:
            _set_socket_permissions(path, m.socket_mode, m.socket_owner, m.socket_group)
        elif m.tcp_nodelay:
            port = int(self.socket_spec.rpartition(":")[2])
            if adapter.set_listener_nodelay(port) == 0:
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

    def serve(self) -> int:
        """Run until SIGTERM/SIGINT (0) or a libmilter failure (1)."""
        from . import adapter

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
                logs.event("listening", socket=self.socket_spec, config=self.config.path,
                           postfix=f"smtpd_milters = {self.socket_spec}",
                           hint="add the lines of deploy/postfix/main.cf.snippet to Postfix's main.cf")
        if self.error is not None:
            logs.event("milter_failed", logging.ERROR, socket=self.socket_spec,
                       problem=f"{type(self.error).__name__}: {self.error}")
            return 1
        logs.event("stopping", in_flight=adapter.in_flight())
        try:
            adapter.stop()  # closes the listening socket: no new MTA connections
        except Exception as exc:
            logs.event("stop_failed", logging.WARNING, problem=repr(exc))
        deadline = time.monotonic() + DRAIN_SECONDS
        while adapter.in_flight() > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        left = adapter.in_flight()
        path = _socket_path(self.socket_spec)
        if path is not None:
            try:
                path.unlink()  # libmilter leaves its socket behind
            except OSError:
                pass
        logs.event("stopped", unfinished=left)
        return 0


def run(args: argparse.Namespace) -> int:
    """Entry point of `otpguard serve`."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _fail_config(exc)
    socket_spec = args.socket or config.milter.socket
    from . import adapter

    try:
        adapter.libmilter_spec(socket_spec)
    except ValueError as exc:
        key = "--socket" if args.socket else "milter.socket"
        print(f"otpguard: configuration error in {args.config if not args.socket else 'command line'}: "
              f"{key}: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.logging.level, config.logging.format)
    metrics = None
    metrics_listen = args.metrics or (config.metrics.listen if config.metrics.enabled else None)
    if metrics_listen:
        try:
            from .metrics import Metrics

            metrics = Metrics(symbols=tuple(config.scoring.weights))
            server = metrics.start_http(metrics_listen)
            logs.event("metrics", url=server.url)
        except ImportError:
            metrics = None
        except (OSError, ValueError) as exc:
            print(f"otpguard: cannot serve metrics on {metrics_listen}: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, ValueError) else 1
    srv = Server(config, socket_spec, metrics, metrics_listen)
    try:
        srv.install(config)
    except ConfigError as exc:
        return _fail_config(exc)
    path = _socket_path(socket_spec)
    if path is not None:
        try:
            _prepare_unix_socket(path)
        except OSError as exc:
            print(f"otpguard: cannot use socket {socket_spec}: {exc}", file=sys.stderr)
            return 1
    return srv.serve()
