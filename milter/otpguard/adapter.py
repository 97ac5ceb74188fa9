"""The thin adapter: the only module that imports Milter (pymilter/libmilter).

Callbacks only collect the envelope and the message bytes; at end of message the engine
decides, `actions.plan` says what to do, and this module does it. A guard around end of
message turns any exception or time-budget overrun into the `milter.on_error` answer and one
log line, so mail is never lost.

Negotiation (Postfix milter protocol 6): we ask only for the steps we use. connect, helo,
envfrom, envrcpt, header and body are no-reply (Postfix does not wait for them); eoh and
unknown are not sent at all; `data` is implemented and answered, because Postfix sends the
DATA macros without waiting and an unanswered step there costs a delayed-ACK round trip on
TCP (design.md, "Performance facts").

Every step runs Python under the GIL on one of libmilter's threads, and every pymilter call
that releases the GIL (addheader, chgheader, quarantine, setsymlist, ...) costs a hand-off
between busy threads: the callbacks here do as little as they can, and call none of them
before end of message (bench/milter_cpu.py measures them).
"""
from __future__ import annotations

import concurrent.futures
import logging
import os
import socket
import stat
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import Milter

from . import actions as act
from . import logs
from .authresults import is_own_authserv_id
from .config import Config
from .headers import is_own_header
from .model import Decision, Envelope


MILTER_NAME = "otpguard"
# Actions we may use at end of message; nothing else is requested from the MTA.
# No macro lists are requested: Postfix's defaults already send the queue id ({i}) at end of
# message, the one macro we read, and five setsymlist calls per connection (each releases
# and retakes the GIL) cost more CPU here than the few macros they would spare Postfix.
NEEDED_ACTIONS = Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE | Milter.CHGBODY
REPLACEBODY_CHUNK = 65535  # libmilter's MILTER_CHUNK_SIZE


class EngineLike(Protocol):
    """What the adapter needs from the analysis engine."""

    def analyse(self, raw: bytes, envelope: Envelope, *, truncated: bool = False) -> Decision: ...

    def too_large(self, size: int) -> Decision: ...

    def own_results_header(self, decision: Decision) -> str | None: ...


class AnalysisTimeout(Exception):
    """Analysis did not finish within analysis.time_budget_seconds."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """Config, engine and observers in use; replaced as a whole on reload (SIGHUP)."""

    config: Config
    engine: EngineLike
    metrics: Any = None      # otpguard.metrics.Metrics or None
    bursts: Any = None       # otpguard.bursts.BurstTracker or None


_runtime: Runtime | None = None
_in_flight = 0
_in_flight_lock = threading.Lock()


def set_runtime(runtime: Runtime) -> None:
    """Install the runtime used by messages that start from now on (atomic swap)."""
    global _runtime
    _runtime = runtime


def get_runtime() -> Runtime:
    """The runtime in use."""
    if _runtime is None:
        raise RuntimeError("otpguard adapter used before set_runtime()")
    return _runtime


def in_flight() -> int:
    """Messages between MAIL FROM and end of message (or abort) right now."""
    return _in_flight


def _count(delta: int) -> None:
    global _in_flight
    with _in_flight_lock:
        _in_flight += delta


# Analysis runs on a pool of long-lived workers rather than a new thread per message; the
# pool grows with concurrent messages (libmilter serves each connection in its own thread).
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="otpguard-analyse")


def run_with_deadline(fn: Callable[[], Any], seconds: float) -> Any:
    """Run fn on an analysis worker; raise AnalysisTimeout if it takes longer than seconds.

    A Python thread cannot be killed: an overrunning analysis finishes in the background
    and its result is dropped; the message has long been answered by then.
    """
    future = _POOL.submit(fn)
    try:
        return future.result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        raise AnalysisTimeout(f"analysis exceeded {seconds:g}s") from None


def _text(value: bytes | str) -> str:
    """Envelope/header bytes as text; undecodable bytes survive as surrogate escapes."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _addr(value: bytes | str) -> str:
    """An envelope address without angle brackets (undecodable bytes replaced)."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return text.strip().removeprefix("<").removesuffix(">").strip()


class _Spool:
    """Body bytes: in memory up to milter.spool_bytes, then in a temporary file in spool_dir."""

    __slots__ = ("_chunks", "_file", "_size", "_limit", "_dir")

    def __init__(self, limit: int, directory: str) -> None:
        self._chunks: list[bytes] = []
        self._file: Any = None
        self._size = 0
        self._limit, self._dir = limit, directory

    @property
    def on_disk(self) -> bool:
        return self._file is not None

    def write(self, data: bytes) -> None:
        if self._file is not None:
            self._file.write(data)
            return
        self._chunks.append(data)
        self._size += len(data)
        if self._size > self._limit:
            self._file = tempfile.TemporaryFile(dir=self._dir or None)
            self._file.write(b"".join(self._chunks))
            self._chunks = []

    def read(self) -> bytes:
        if self._file is None:
            return b"".join(self._chunks)
        self._file.seek(0)
        return self._file.read()

    def close(self) -> None:
        self._chunks = []
        if self._file is not None:
            self._file.close()


@dataclass(slots=True)
class _Message:
    """Per-message state; a fresh one at every MAIL FROM."""

    mail_from: str | None
    rcpt_to: list[str]
    headers: list[tuple[str, bytes]]
    body: _Spool
    max_message_bytes: int  # this message's limits, from the config it started with
    max_parse_bytes: int
    size: int = 0  # the whole message, as received
    kept: int = 0  # body bytes spooled: at most analysis.max_parse_bytes
    started: float = 0.0
    error: str | None = None  # a failure while collecting, reported at end of message


class OtpGuardMilter(Milter.Base):
    """One instance per MTA connection; one message at a time."""

    def __init__(self) -> None:
        self._client_ip: str | None = None
        self._client_name: str | None = None
        self._helo: str | None = None
        self._msg: _Message | None = None

    # --- negotiation --------------------------------------------------------------------
    def negotiate(self, opts: list[int]) -> int:
        """Request only the actions and protocol steps we use."""
        try:
            offered_actions, offered_proto = opts[0], opts[1]
            self._actions = offered_actions & NEEDED_ACTIONS
            # protocol_mask() lists the steps and replies we do NOT want skipped; the
            # remaining offered bits (P_NO*, P_NR*) are the ones we accept.
            self._protocol = offered_proto & ~self.protocol_mask()
            opts[0] = self._actions
            opts[1] = self._protocol
            opts[2] = 0
            opts[3] = 0
        except Exception as exc:  # never let negotiation kill the connection silently
            logs.event("negotiate_failed", logging.WARNING, error=repr(exc))
            return Milter.ALL_OPTS
        return Milter.CONTINUE

    # --- collection (no reply: Postfix does not wait) ------------------------------------
    @Milter.noreply
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        """Remember the SMTP client's address and name."""
        if isinstance(hostaddr, tuple):
            self._client_ip = str(hostaddr[0])
        elif isinstance(hostaddr, str) and family in (socket.AF_INET, socket.AF_INET6):
            self._client_ip = hostaddr
        # Postfix passes "[1.2.3.4]" or "unknown" when the client has no verified name.
        name = hostname or ""
        self._client_name = None if (not name or name.startswith("[") or name == "unknown") else name
        return Milter.CONTINUE

    @Milter.noreply
    def hello(self, heloname: str) -> int:
        """Remember HELO/EHLO."""
        self._helo = _text(heloname)
        return Milter.CONTINUE

    @Milter.noreply
    @Milter.decode("bytes")
    def envfrom(self, mail_from: bytes | str, *params: bytes | str) -> int:
        """A new message starts: reset all per-message state (one connection, many messages)."""
        self._end_message()
        rt = get_runtime()
        self._msg = _Message(mail_from=_addr(mail_from), rcpt_to=[], headers=[],
                             body=_Spool(rt.config.milter.spool_bytes, rt.config.milter.spool_dir),
                             max_message_bytes=rt.config.analysis.max_message_bytes,
                             max_parse_bytes=rt.config.analysis.max_parse_bytes, started=time.monotonic())
        _count(+1)
        return Milter.CONTINUE

    @Milter.noreply
    @Milter.decode("bytes")
    def envrcpt(self, rcpt: bytes | str, *params: bytes | str) -> int:
        """Collect one accepted recipient."""
        if self._msg is not None:
            self._msg.rcpt_to.append(_addr(rcpt))
        return Milter.CONTINUE

    def data(self) -> int:
        """Answered on purpose (see module doc): avoids a delayed-ACK stall per message."""
        return Milter.CONTINUE

    @Milter.noreply
    @Milter.decode("bytes")
    def header(self, name: bytes | str, value: bytes | str) -> int:
        """Collect one header field as raw bytes (undecodable bytes kept)."""
        msg = self._msg
        if msg is not None:
            nm = name if isinstance(name, str) else name.decode("ascii", "replace")
            val = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
            msg.size += len(nm) + len(val) + 4
            if msg.size <= msg.max_message_bytes:
                msg.headers.append((nm, val))
        return Milter.CONTINUE

    @Milter.noreply
    def body(self, chunk: bytes) -> int:
        """Spool a body chunk (in memory up to milter.spool_bytes, then to disk)."""
        msg = self._msg
        if msg is not None and msg.error is None:
            msg.size += len(chunk)
            # Only the part of the body the analysis reads is kept: a 50 MB message costs a
            # counter, not 50 MB of memory or disk.
            room = msg.max_parse_bytes - msg.kept
            if room > 0:
                try:
                    msg.body.write(chunk[:room])
                    msg.kept += min(room, len(chunk))
                except Exception as exc:  # e.g. spool disk full: decided at end of message
                    msg.error = f"spool: {exc!r}"
        return Milter.CONTINUE

    # --- end of message -------------------------------------------------------------------
    def eom(self) -> int:
        """Analyse, plan, apply; any failure answers per milter.on_error."""
        rt = get_runtime()
        msg = self._msg
        started = msg.started if msg is not None else time.monotonic()
        queue_id = self._queue_id()
        decision: Decision | None = None
        stage = "parse"
        try:
            if msg is None:
                raise RuntimeError("end of message without MAIL FROM")
            if msg.error:
                raise RuntimeError(msg.error)
            envelope = Envelope(client_ip=self._client_ip, client_name=self._client_name, helo=self._helo,
                                mail_from=msg.mail_from, rcpt_to=tuple(msg.rcpt_to), queue_id=queue_id)
            stage = "analysis"
            budget = rt.config.analysis.time_budget_seconds
            analysis_started = time.monotonic()
            if msg.size > msg.max_message_bytes:
                raw = b""
                decision = rt.engine.too_large(msg.size)
            else:
                raw = self._raw(msg)
                truncated = msg.size > len(raw)
                if rt.metrics is not None:
                    rt.metrics.analysis_started()
                try:
                    decision = run_with_deadline(lambda: rt.engine.analyse(raw, envelope, truncated=truncated),
                                                 budget)
                finally:
                    if rt.metrics is not None:
                        rt.metrics.analysis_ended()
                if truncated:
                    raw = b""  # a prefix must never become the new body (banner)
            # The histogram is analysis time, not the SMTP transfer since MAIL FROM.
            analysis_seconds = time.monotonic() - analysis_started
            stage = "policy"
            burst = rt.bursts.observe(decision, envelope) if rt.bursts is not None else None
            planned = act.plan(decision, rt.config.actions, self._subject(msg),
                               auth_results=rt.engine.own_results_header(decision),
                               authserv_id=rt.config.auth.authserv_id, burst=burst)
            stage = "actions"
            notes: list[str] = []
            rc = self._apply(planned, msg, raw, notes)
            elapsed = time.monotonic() - started
            summary = act.describe(planned)
            logs.message(queue_id=queue_id, decision=decision, action=summary, ms=elapsed * 1000,
                         client_ip=self._client_ip, notes=notes)
            if rt.metrics is not None:
                rt.metrics.record_message(decision, _disposition(planned), analysis_seconds,
                                          applied=_applied(planned))
                if burst is not None:
                    rt.metrics.burst_detected(new=burst.new_burst)
            return rc
        except Exception as exc:
            if isinstance(exc, AnalysisTimeout):
                stage = "timeout"
            return self._on_error(rt, msg, queue_id, decision, stage, exc, started)
        finally:
            self._end_message()

    def _on_error(self, rt: Runtime, msg: _Message | None, queue_id: str | None,
                  decision: Decision | None, stage: str, exc: Exception, started: float) -> int:
        """The guard: answer per on_error, log one line, count the error."""
        if rt.metrics is not None:
            try:
                rt.metrics.record_error(stage)
            except Exception:
                pass
        # Monitor mode promises to change nothing, so it never defers mail either.
        tempfail = rt.config.milter.on_error == "tempfail" and not rt.config.actions.monitor
        action = "error-tempfail" if tempfail else ("monitor" if rt.config.actions.monitor else "error-accept")
        detail = f"{stage}: {type(exc).__name__}: {exc}"
        if tempfail:
            rc = Milter.TEMPFAIL
            try:
                self.setreply("451", "4.3.0", "otpguard: temporary failure, please retry")
            except Exception:
                pass
        else:
            rc = Milter.CONTINUE
            # After a failure half-way through the actions, what was applied stays; tagging
            # again would only add a second, contradicting verdict.
            if not rt.config.actions.monitor and msg is not None and stage != "actions":
                try:
                    self._apply(act.error_plan(rt.config.auth.authserv_id), msg, b"")
                except Exception as apply_exc:  # the MTA connection itself may be gone
                    detail += f"; tagging failed: {apply_exc!r}"
        logs.message(queue_id=queue_id, decision=decision, action=action,
                     ms=(time.monotonic() - started) * 1000, error=detail, client_ip=self._client_ip)
        return rc

    def abort(self) -> int:
        """The client gave up on the message (RSET, QUIT, lost connection): drop its state."""
        self._end_message()
        return Milter.CONTINUE

    def close(self) -> int:
        """End of the MTA connection."""
        self._end_message()
        return Milter.CONTINUE

    # --- helpers -----------------------------------------------------------------------------
    def _end_message(self) -> None:
        msg, self._msg = self._msg, None
        if msg is not None:
            _count(-1)
            try:
                msg.body.close()
            except Exception:
                pass

    def _queue_id(self) -> str | None:
        """Postfix's queue id ({i}, sent with end of message by default), if known."""
        try:
            qid = self.getsymval("i")
        except Exception:  # no context (unit tests) or macro not sent
            return None
        return (_text(qid) if not isinstance(qid, str) else qid) or None

    @staticmethod
    def _raw(msg: _Message) -> bytes:
        """The message as the engine sees it: header fields, blank line, body (CRLF line ends)."""
        parts = []
        for name, value in msg.headers:
            # Postfix passes folded values with bare LF (or CRLF) before continuation lines.
            v = value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            parts.append(name.encode("ascii", "replace") + b": " + v + b"\r\n")
        parts.append(b"\r\n")
        parts.append(msg.body.read())
        return b"".join(parts)

    @staticmethod
    def _subject(msg: _Message) -> str | None:
        for name, value in msg.headers:
            if name.lower() == "subject":
                return value.decode("utf-8", "surrogateescape")
        return None

    def _forged(self, msg: _Message, authserv_id: str | None) -> list[tuple[str, int]]:
        """(name, 1-based index among fields of that name) of headers to delete, last first.

        smfi_chgheader counts occurrences of one name; deleting from the highest index down
        keeps the remaining indexes valid whether or not the MTA renumbers after a delete.
        """
        seen: dict[str, int] = {}
        out: list[tuple[str, int]] = []
        for name, value in msg.headers:
            key = name.lower()
            seen[key] = seen.get(key, 0) + 1
            if is_own_header(name):
                out.append((name, seen[key]))
            elif key == "authentication-results" and authserv_id and \
                    is_own_authserv_id(value.decode("utf-8", "replace"), authserv_id):
                out.append((name, seen[key]))
        return sorted(out, key=lambda t: (t[0].lower(), -t[1]))

    def _apply(self, planned: tuple[act.Action, ...], msg: _Message, raw: bytes,
               notes: list[str] | None = None) -> int:
        """Carry out planned actions through libmilter; returns the eom reply code.

        What could not be done safely (a banner on an unsuitable body) goes into notes,
        which end up in the message's log line.
        """
        rc = Milter.CONTINUE
        for a in planned:
            match a:
                case act.RemoveForgedHeaders(authserv_id=aid):
                    for name, idx in self._forged(msg, aid):
                        self.chgheader(name, idx, None)
                case act.AddHeader(name=name, value=value, index=index):
                    self.addheader(name, value, index)
                case act.ChangeSubject(value=value, add=add):
                    if add:
                        self.addheader("Subject", value, -1)
                    else:
                        self.chgheader("Subject", 1, value)
                case act.Banner(text=text, html=html):
                    body, why = act.banner_body(raw, text, html) if raw else (None, "message larger than analysed")
                    if body is None:
                        if notes is not None:
                            notes.append(f"banner skipped: {why}")
                    else:
                        for i in range(0, len(body), REPLACEBODY_CHUNK):
                            self.replacebody(body[i:i + REPLACEBODY_CHUNK])
                case act.Quarantine(reason=reason):
                    self.quarantine(reason)
                case act.Reject(code=code, xcode=xcode, text=text):
                    self.setreply(code, xcode, text)
                    rc = Milter.REJECT
                case act.Monitor():
                    pass
        return rc


def _disposition(planned: tuple[act.Action, ...]) -> str:
    """The final action label for metrics: reject, quarantine, tag, monitor or accept."""
    kinds = {type(a) for a in planned}
    if act.Monitor in kinds:
        return "monitor"
    if act.Reject in kinds:
        return "reject"
    if act.Quarantine in kinds:
        return "quarantine"
    if kinds & {act.AddHeader, act.ChangeSubject, act.Banner}:
        return "tag"
    return "accept"


def _applied(planned: tuple[act.Action, ...]) -> list[str]:
    """The action words applied, for metrics."""
    return [w for w in act.describe(planned).split("+") if w not in ("none", "monitor", "reject")] + \
        (["reject"] if any(isinstance(a, act.Reject) for a in planned) else [])


# --- running libmilter -----------------------------------------------------------------------

def libmilter_spec(spec: str) -> str:
    """Postfix socket spelling to libmilter's: unix:/p -> unix:/p, inet:H:P -> inet:P@H."""
    kind, _, rest = spec.partition(":")
    if kind == "unix" and rest.startswith("/"):
        return f"unix:{rest}"
    if kind in ("inet", "inet6"):
        host, sep, port = rest.rpartition(":")
        host = host.strip("[]")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad socket {spec!r}: expected inet:HOST:PORT")
        family = "inet6" if ":" in host else "inet"
        return f"{family}:{port}@{host}" if host else f"{family}:{port}"
    raise ValueError(f"bad socket {spec!r}: expected unix:/path or inet:HOST:PORT")


def _socket_fds() -> list[int]:
    """Open socket file descriptors of this process."""
    try:
        fds = [int(x) for x in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: probe the usual range
        fds = list(range(3, 1024))
    out = []
    for fd in fds:
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                out.append(fd)
        except OSError:
            continue
    return out


def set_listener_nodelay(port: int) -> int:
    """Set TCP_NODELAY on our listening socket(s) on port; returns how many were set.

    libmilter never sets TCP_NODELAY and does not expose its sockets. Linux copies the
    listening socket's TCP_NODELAY to every accepted socket (the child socket is cloned from
    the listener), so setting it once on the listener covers all MTA connections.
    """
    count = 0
    for fd in _socket_fds():
        try:
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if s.family not in (socket.AF_INET, socket.AF_INET6) or s.type != socket.SOCK_STREAM:
                continue
            if not s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                continue
            if s.getsockname()[1] != port:
                continue
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            count += 1
        except OSError:
            continue
        finally:
            s.close()
    return count


def run(socket_spec: str, *, timeout: int = 600, on_listening: Callable[[], None] | None = None,
        rmsock: bool = True) -> None:
    """Register callbacks, open the socket, call on_listening, and serve until stop().

    Like Milter.runmilter, but with a hook between opening the socket and serving (socket
    permissions, TCP_NODELAY) and with only the actions we use registered.
    """
    import milter as _milter  # pymilter's C module (registered callbacks are process-global)

    Milter.factory = OtpGuardMilter
    Milter.set_flags(NEEDED_ACTIONS)
    Milter.set_exception_policy(Milter.TEMPFAIL)
    _milter.set_connect_callback(Milter.connect_callback)
    _milter.set_helo_callback(lambda ctx, host: ctx.getpriv().hello(host))
    _milter.set_envfrom_callback(lambda ctx, *b: ctx.getpriv().envfrom_bytes(*b))
    _milter.set_envrcpt_callback(lambda ctx, *b: ctx.getpriv().envrcpt_bytes(*b))
    _milter.set_header_callback(lambda ctx, f, v: ctx.getpriv().header_bytes(f, v))
    _milter.set_eoh_callback(lambda ctx: ctx.getpriv().eoh())
    _milter.set_body_callback(lambda ctx, chunk: ctx.getpriv().body(chunk))
    _milter.set_eom_callback(lambda ctx: ctx.getpriv().eom())
    _milter.set_abort_callback(lambda ctx: ctx.getpriv().abort())
    _milter.set_close_callback(Milter.close_callback)
    _milter.setconn(libmilter_spec(socket_spec))
    if timeout > 0:
        _milter.settimeout(timeout)
    _milter.register(MILTER_NAME, data=lambda ctx: ctx.getpriv().data(),
                     unknown=lambda ctx, cmd: ctx.getpriv().unknown(cmd),
                     negotiate=Milter.negotiate_callback)
    _milter.opensocket(rmsock)
    if on_listening is not None:
        on_listening()
    _milter.main()


def stop() -> None:
    """Ask libmilter to stop accepting connections; run() returns soon after."""
    import milter as _milter

    _milter.stop()
