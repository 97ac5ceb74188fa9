"""The thin adapter: the only module that imports Milter (pymilter/libmilter).

Callbacks only collect the envelope and the message bytes (spool.CollectedMessage); at end of
message handler.plan_message decides what to do, this module does it through libmilter, and
handler.record accounts for it. A guard around end of message turns any exception or
time-budget overrun into the `milter.on_error` answer and one log line, so mail is never lost.

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

import logging
import socket
import time
from typing import Any, Callable

import Milter

from ..core.model import Envelope
from ..ops import logs
from . import actions as act
from . import handler
from .runtime import Runtime, RuntimeReplaced, count_in_flight, get_runtime
from .sockets import libmilter_spec
from .spool import CollectedMessage, Spool


MILTER_NAME = "otpguard"
# Actions we may use at end of message; nothing else is requested from the MTA.
# No macro lists are requested: Postfix's defaults already send the queue id ({i}) at end of
# message, the one macro we read, and five setsymlist calls per connection (each releases
# and retakes the GIL) cost more CPU here than the few macros they would spare Postfix.
NEEDED_ACTIONS = Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE | Milter.CHGBODY
REPLACEBODY_CHUNK = 65535  # libmilter's MILTER_CHUNK_SIZE


def _text(value: bytes | str) -> str:
    """Envelope/header bytes as text; undecodable bytes survive as surrogate escapes."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _addr(value: bytes | str) -> str:
    """An envelope address without angle brackets (undecodable bytes replaced)."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return text.strip().removeprefix("<").removesuffix(">").strip()


class OtpGuardMilter(Milter.Base):
    """One instance per MTA connection; one message at a time."""

    def __init__(self) -> None:
        self._client_ip: str | None = None
        self._client_name: str | None = None
        self._helo: str | None = None
        self._msg: CollectedMessage | None = None

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
        self._msg = CollectedMessage(mail_from=_addr(mail_from), rcpt_to=[], headers=[],
                                     body=Spool(rt.config.milter.spool_bytes, rt.config.milter.spool_dir),
                                     max_message_bytes=rt.config.analysis.max_message_bytes,
                                     max_parse_bytes=rt.config.analysis.max_parse_bytes, started=time.monotonic())
        count_in_flight(+1)
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
            msg.add_header(nm, val)
        return Milter.CONTINUE

    @Milter.noreply
    def body(self, chunk: bytes) -> int:
        """Spool a body chunk (in memory up to milter.spool_bytes, then to disk)."""
        if self._msg is not None:
            self._msg.add_body(chunk)
        return Milter.CONTINUE

    # --- end of message -------------------------------------------------------------------
    def eom(self) -> int:
        """Analyse, plan, apply; any failure answers per milter.on_error."""
        try:
            while True:
                try:
                    return self._eom(get_runtime())
                except RuntimeReplaced:  # a reload came between: nothing was done yet, start over
                    continue
        finally:
            self._end_message()

    def _eom(self, rt: Runtime) -> int:
        msg = self._msg
        started = msg.started if msg is not None else time.monotonic()
        queue_id = self._queue_id()
        progress = handler.Progress()
        try:
            if msg is None:
                raise RuntimeError("end of message without MAIL FROM")
            if msg.error:
                raise RuntimeError(msg.error)
            envelope = Envelope(client_ip=self._client_ip, client_name=self._client_name, helo=self._helo,
                                mail_from=msg.mail_from, rcpt_to=tuple(msg.rcpt_to), queue_id=queue_id)
            planned = handler.plan_message(rt, msg, envelope, progress)
            progress.stage = "actions"
            notes: list[str] = []
            rc = self._apply(planned.actions, msg, planned.raw, notes)
            handler.record(rt, planned, queue_id=queue_id, client_ip=self._client_ip, started=started, notes=notes,
                           msg=msg)
            return rc
        except RuntimeReplaced:
            raise
        except Exception as exc:
            return self._on_error(rt, msg, queue_id, progress, exc, started)

    def _on_error(self, rt: Runtime, msg: CollectedMessage | None, queue_id: str | None,
                  progress: handler.Progress, exc: Exception, started: float) -> int:
        """The guard: answer per on_error, log one line, count the error."""
        outcome = handler.error_outcome(rt, progress, exc, have_message=msg is not None,
                                        rcpts=tuple(msg.rcpt_to) if msg is not None else ())
        detail = outcome.detail
        if outcome.tempfail:
            rc = Milter.TEMPFAIL
            try:
                self.setreply("451", "4.3.0", "otpguard: temporary failure, please retry")
            except Exception:
                pass
        else:
            rc = Milter.CONTINUE
            if outcome.actions and msg is not None:
                try:
                    self._apply(outcome.actions, msg, b"")
                except Exception as apply_exc:  # the MTA connection itself may be gone
                    detail += f"; tagging failed: {apply_exc!r}"
        handler.log_error(outcome, progress, queue_id=queue_id, client_ip=self._client_ip, started=started,
                          detail=detail, msg=msg)
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
            count_in_flight(-1)
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

    def _apply(self, planned: tuple[act.Action, ...], msg: CollectedMessage, raw: bytes,
               notes: list[str] | None = None) -> int:
        """Carry out planned actions through libmilter; returns the eom reply code.

        What could not be done safely (a banner on an unsuitable body) goes into notes,
        which end up in the message's log line.
        """
        rc = Milter.CONTINUE
        for a in planned:
            match a:
                case act.RemoveForgedHeaders(authserv_id=aid, trusted_ids=tids, trusted_hops=hops):
                    for name, idx in act.forged_fields(msg.headers, aid, trusted_ids=tids, trusted_hops=hops):
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



# --- running libmilter -----------------------------------------------------------------------

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
