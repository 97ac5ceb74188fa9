"""One message as the milter collects it: envelope, header fields, and the body spooled to a cap."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any


class Spool:
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

    def fileno(self) -> int:
        """The spool file's descriptor, its content flushed (an analysis worker reads it)."""
        self._file.flush()
        return self._file.fileno()

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
class CollectedMessage:
    """Per-message state; a fresh one at every MAIL FROM."""

    mail_from: str | None
    rcpt_to: list[str]
    headers: list[tuple[str, bytes]]
    body: Spool
    max_message_bytes: int  # this message's limits, from the config it started with
    max_parse_bytes: int
    size: int = 0  # the whole message, as received
    kept: int = 0  # body bytes spooled: at most analysis.max_parse_bytes
    started: float = 0.0
    error: str | None = None  # a failure while collecting, reported at end of message

    def add_header(self, name: str, value: bytes) -> None:
        """Count one header field; keep it while the message is within max_message_bytes."""
        self.size += len(name) + len(value) + 4
        if self.size <= self.max_message_bytes:
            self.headers.append((name, value))

    def add_body(self, chunk: bytes) -> None:
        """Count a body chunk; spool only the part the analysis reads (max_parse_bytes).

        A 50 MB message costs a counter, not 50 MB of memory or disk. A spool failure (disk
        full) is kept in `error` and decided at end of message.
        """
        if self.error is not None:
            return
        self.size += len(chunk)
        room = self.max_parse_bytes - self.kept
        if room > 0:
            try:
                self.body.write(chunk[:room])
                self.kept += min(room, len(chunk))
            except Exception as exc:  # noqa: BLE001 - e.g. spool disk full
                self.error = f"spool: {exc!r}"

    def raw(self) -> bytes:
        """The message as the engine sees it: header fields, blank line, body (CRLF line ends)."""
        return self.head() + self.body.read()

    def head(self) -> bytes:
        """The header section as the engine sees it, with the blank line that ends it."""
        parts = []
        for name, value in self.headers:
            # Postfix passes folded values with bare LF (or CRLF) before continuation lines.
            if b"\n" in value:
                value = value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            parts += (name.encode("ascii", "replace"), b": ", value, b"\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def subject(self) -> str | None:
        """The Subject field as received (undecodable bytes kept as surrogate escapes)."""
        for name, value in self.headers:
            if name.lower() == "subject":
                return value.decode("utf-8", "surrogateescape")
        return None
