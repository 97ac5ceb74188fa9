"""Log lines: one per message (queue id, verdict, score, symbols, action, ms), logfmt or JSON.

Every line is an event name plus fields. Values are escaped so that no input can break a
line or forge a field; message bodies and reasons never go into the per-message line
(reasons are logged at debug level only, escaped).
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, Iterable, Mapping

from .model import Decision

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


class LineFormatter(logging.Formatter):
    """Formats records as `ts level event fields...` in logfmt or JSON."""

    def __init__(self, fmt: str = "logfmt") -> None:
        super().__init__()
        self.kind = fmt

    _second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        second, text = self._second
        if int(record.created) != second:  # one strftime per second, not per line
            second = int(record.created)
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        ts = f"{text}.{int(record.msecs):03d}Z"
        fields: list[tuple[str, Any]] = [("ts", ts), ("level", record.levelname.lower())]
        extra: Mapping[str, Any] | None = getattr(record, "fields", None)
        if extra is not None:
            fields.append(("event", record.getMessage()))
            fields += list(extra.items())
        else:
            fields += [("event", "log"), ("logger", record.name), ("msg", record.getMessage())]
        if record.exc_info and record.levelno >= logging.ERROR:
            fields.append(("exc", self.formatException(record.exc_info)))
        return json_line(fields) if self.kind == "json" else logfmt(fields)


def setup(level: str = "info", fmt: str = "logfmt", stream: Any = None) -> None:
    """Send all logging to stderr (or stream) in the chosen format, replacing earlier setup."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_otpguard", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(LineFormatter(fmt))
    handler._otpguard = True  # type: ignore[attr-defined]
    root.addHandler(handler)
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
                   notes: list[str] | None = None) -> dict[str, Any]:
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
    if notes:
        fields["notes"] = list(notes)
    if error:
        fields["error"] = error
    return fields


def message(*, queue_id: str | None, decision: Decision | None, action: str, ms: float,
            error: str | None = None, client_ip: str | None = None, notes: list[str] | None = None) -> None:
    """Log THE line for one message (warning level when it is an error line)."""
    fields = message_fields(queue_id=queue_id, decision=decision, action=action, ms=ms, error=error,
                            client_ip=client_ip, notes=notes)
    event("message", logging.WARNING if error else logging.INFO, **fields)
    log = logging.getLogger(LOGGER_NAME)
    if decision is not None and decision.hits and log.isEnabledFor(logging.DEBUG):
        event("reasons", logging.DEBUG, queue_id=queue_id or "-",
              reasons=[f"{h.symbol}: {h.reason}" for h in decision.hits])
