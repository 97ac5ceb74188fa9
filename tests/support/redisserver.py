"""A real redis-server on a free loopback port, for tests; stop() and restart() simulate outages.

Use the fixtures by importing them into a test module:
    from support.redisserver import redis_server  # noqa: F401
Without redis-server the fixtures skip, except under CI=true where they fail: CI must not pass
by testing nothing.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.gate import server_started, unavailable

REDIS_SERVER = os.environ.get("REDIS_SERVER", "redis-server")
START_TIMEOUT = 5.0


def require_redis_server() -> str:
    """Path of redis-server; skip the test (fail under CI=true) when it is missing."""
    path = shutil.which(REDIS_SERVER)
    if path is None:
        unavailable("Redis", f"{REDIS_SERVER} not found: install Debian's redis-server package "
                             "(make setup as root does it)")
        raise AssertionError("unreachable")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _ping(host: str, port: int, timeout: float = 0.2) -> bool:
    # Speak RESP directly: the fixture must not depend on the client library under test.
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process with no persistence, bound to loopback."""

    def __init__(self, directory: Path, *, binary: str = REDIS_SERVER, host: str = "127.0.0.1",
                 port: int | None = None) -> None:
        self.directory = directory
        self.binary = binary
        self.host = host
        self.port = port or free_port(host)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        cmd = [self.binary, "--port", str(self.port), "--bind", self.host, "--save", "",
               "--appendonly", "no", "--daemonize", "no", "--dir", str(self.directory),
               "--logfile", str(self.log)]
        server_started("redis")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if _ping(self.host, self.port):
                return
            time.sleep(0.02)
        self.stop()
        log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        raise RuntimeError(f"redis-server did not start on {self.host}:{self.port}:\n{log}")

    def stop(self) -> None:
        """Stop the server (SIGTERM to our own process, then wait for it)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same port (with empty data: nothing is persisted)."""
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for one test (stop it to simulate an outage)."""
    binary = require_redis_server()
    server = RedisServer(tmp_path / "redis", binary=binary)
    # A port taken between free_port() and bind: try another.
    for attempt in range(3):
        try:
            server.start()
            break
        except RuntimeError:
            if attempt == 2:
                raise
            server = RedisServer(tmp_path / f"redis{attempt}", binary=binary)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of a fresh redis-server for one test."""
    return redis_server.url
