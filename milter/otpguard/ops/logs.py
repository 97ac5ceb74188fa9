"""Log lines: one per message (queue id, verdict, score, symbols, action, ms), logfmt or JSON.

Every line is an event name plus fields. Values are escaped so that no input can break a
line or forge a field; message bodies and reasons never go into the per-message line
(reasons are logged at debug level only, escaped).
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from typing import Any, Iterable, Mapping

from ..core.model import Decision

LOGGER_NAME = "otpguard"
_BARE = re.compile(r"[A-Za-z0-9\-_.,:/@+<>\[\]()]+")


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        text = f"{value:.3f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    return str(value)


def logfmt_value(value: Any) -> str:
    """A logfmt value: bare when safe, else double-quoted with \\ \" and controls escaped."""
    text = _text(value)
    if _BARE.fullmatch(text):
        return text
    out = []
    for ch in text:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or o == 0x7F or 0xD800 <= o <= 0xDFFF:
            out.append(f"\\x{o & 0xFF:02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def logfmt(fields: Iterable[tuple[str, Any]]) -> str:
    """key=value pairs on one line."""
    return " ".join(f"{k}={logfmt_value(v)}" for k, v in fields)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    # Lone surrogates (raw bytes from the wire) are not valid JSON text: escape them.
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def json_line(fields: Iterable[tuple[str, Any]]) -> str:
    """One JSON object per line, ASCII-only."""
    return json.dumps({k: _jsonable(v) for k, v in fields}, ensure_ascii=True, separators=(",", ":"))


# sd-daemon(3) / syslog(3) priorities: journald reads a "<N>" at the start of a line on a
# service's stdout/stderr as that line's priority (SyslogLevelPrefix=, on by default).
PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def priority(level: int) -> int:
    """The syslog priority of a logging level (levels in between round to the more severe one)."""
    for threshold in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if level >= threshold:
            return PRIORITIES[threshold]
    return PRIORITIES[logging.DEBUG]


def stderr_is_journal(stream: Any = None) -> bool:
    """Whether the stream is the journal: systemd sets JOURNAL_STREAM=DEV:INODE for it (systemd.exec(5))."""
    wanted = os.environ.get("JOURNAL_STREAM", "")
    if not wanted:
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return wanted == f"{st.st_dev}:{st.st_ino}"


class LineFormatter(logging.Formatter):
    """Formats records as `ts level event fields...` in logfmt or JSON (with a "<N>" priority
    prefix for journald when asked)."""

    def __init__(self, fmt: str = "logfmt", *, priority_prefix: bool = False) -> None:
        super().__init__()
        self.kind = fmt
        self.priority_prefix = priority_prefix

    _second: tuple[int, str] = (-1, "")

    def timestamp(self, created: float) -> str:
        """ISO 8601 UTC with milliseconds; one strftime per second, not per line."""
        second, text = self._second
        if int(created) != second:
            second = int(created)
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        return f"{text}.{int((created - second) * 1000):03d}Z"

    def line(self, created: float, level: int, event: str, extra: Mapping[str, Any]) -> str:
        """One event line."""
        fields: list[tuple[str, Any]] = [("ts", self.timestamp(created)),
                                         ("level", logging.getLevelName(level).lower()), ("event", event)]
        fields += extra.items()
        text = json_line(fields) if self.kind == "json" else logfmt(fields)
        return f"<{priority(level)}>{text}" if self.priority_prefix else text

    def format(self, record: logging.LogRecord) -> str:
        extra: Mapping[str, Any] | None = getattr(record, "fields", None)
        if extra is None:
            extra = {"logger": record.name, "msg": record.getMessage()}
        event = record.getMessage() if "fields" in record.__dict__ else "log"
        if record.exc_info and record.levelno >= logging.ERROR:
            extra = {**extra, "exc": self.formatException(record.exc_info)}
        return self.line(record.created, record.levelno, event, extra)


class _LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Our stream handler; per-message lines may skip the logging machinery (see message())."""

    formatter: LineFormatter
    _otpguard = True  # what setup() replaces

    def write_line(self, level: int, event: str, fields: Mapping[str, Any]) -> None:
        line = self.formatter.line(time.time(), level, event, fields)
        with self.lock:  # type: ignore[union-attr]
            try:
                self.stream.write(line + self.terminator)
                self.stream.flush()
            except Exception:  # noqa: BLE001 - a broken log stream must not fail the message
                pass


_handler: _LineHandler | None = None


def setup(level: str = "info", fmt: str = "logfmt", stream: Any = None, priority_prefix: str = "never") -> None:
    """Send all logging to stderr (or stream) in the chosen format, replacing earlier setup.

    priority_prefix: "always", "never", or "auto" (when the stream is the journal).

    Process-wide: it also stops logging from recording callers, threads and processes, which
    no otpguard line shows (an embedding program's records lose those fields too).
    """
    global _handler
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_otpguard", False):
            root.removeHandler(h)
    handler = _LineHandler(stream or sys.stderr)
    prefix = priority_prefix == "always" or (priority_prefix == "auto" and stderr_is_journal(stream))
    handler.setFormatter(LineFormatter(fmt, priority_prefix=prefix))
    root.addHandler(handler)
    _handler = handler
    # Our lines never show the caller, thread or process: skip collecting them for every record
    # (the logging HOWTO's "Optimization" section; a third of the cost of a message line).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root.setLevel(level.upper())


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event line with fields."""
    logging.getLogger(LOGGER_NAME).log(level, name, extra={"fields": fields})


def message_fields(*, queue_id: str | None, decision: Decision | None, action: str, ms: float,
                   error: str | None = None, client_ip: str | None = None,
                   notes: list[str] | None = None, facts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The fields of the per-message line."""
    fields: dict[str, Any] = {"queue_id": queue_id or "-"}
    if decision is not None:
        fields["verdict"] = "genuine" if decision.genuine else decision.level.value
        fields["score"] = round(decision.score, 3)
        fields["symbols"] = list(decision.symbols)
    else:
        fields["verdict"] = "error"
    fields["action"] = action
    fields["ms"] = round(ms, 1)
    if client_ip:
        fields["client"] = client_ip
    if facts:
        fields.update(facts)  # sender_domain, rcpts, message_id, size (mta/handler.message_facts)
    kept = list(decision.notes) if decision is not None else []
    if notes:
        kept += notes
    if kept:
        fields["notes"] = kept
    if error:
        fields["error"] = error
    return fields


def message(*, queue_id: str | None, decision: Decision | None, action: str, ms: float,
            error: str | None = None, client_ip: str | None = None, notes: list[str] | None = None,
            facts: Mapping[str, Any] | None = None) -> None:
    """Log THE line for one message (warning level when it is an error line)."""
    fields = message_fields(queue_id=queue_id, decision=decision, action=action, ms=ms, error=error,
                            client_ip=client_ip, notes=notes, facts=facts)
    # A failure the core caught and went on from is worth a warning too (Decision.internal_failures).
    level = logging.WARNING if error or (decision is not None and decision.internal_failures) else logging.INFO
    log = logging.getLogger(LOGGER_NAME)
    root, handler = logging.root, _handler
    # One snapshot of the list: a reload (SIGHUP) may swap handlers while other threads log.
    if handler is not None and tuple(root.handlers) == (handler,) and not log.handlers \
            and log.isEnabledFor(level):
        # The one line per message skips LogRecord, filters and handler chains: through
        # Postfix that machinery cost a tenth of the milter's CPU (bench/milter_cpu.py).
        # Anyone else listening (a test's capture, an embedding program) gets real records.
        handler.write_line(level, "message", fields)
    else:
        event("message", level, **fields)
    if decision is not None and decision.hits and log.isEnabledFor(logging.DEBUG):
        event("reasons", logging.DEBUG, queue_id=queue_id or "-",
              reasons=[f"{h.symbol}: {h.reason}" for h in decision.hits])
