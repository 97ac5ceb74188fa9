"""Log lines: the per-message facts, and syslog priority prefixes so journald files each line
at its priority (sd-daemon(3): a "<N>" at the start of a line on a service's stderr)."""
from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from otpguard.core.model import Decision, Level
from otpguard.mta.handler import MAX_MESSAGE_ID, message_facts
from otpguard.mta.spool import CollectedMessage, Spool
from otpguard.ops import logs
from support.postfix import OTPGUARD, free_port, write_test_config


def test_priority_prefixes_follow_the_level() -> None:
    fmt = logs.LineFormatter("logfmt", priority_prefix=True)
    lines = {level: fmt.line(0.0, level, "x", {}) for level in
             (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)}
    assert [lines[lv][:3] for lv in sorted(lines)] == ["<7>", "<6>", "<4>", "<3>", "<2>"]
    assert lines[logging.INFO][3:].startswith("ts=1970-01-01T00:00:00.000Z level=info event=x")
    assert not logs.LineFormatter("json").line(0.0, logging.ERROR, "x", {}).startswith("<")


def test_auto_prefixes_only_when_stderr_is_the_journal(monkeypatch: pytest.MonkeyPatch) -> None:
    with tempfile.TemporaryFile("w+") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert logs.stderr_is_journal(stream)
        logs.setup("info", "json", stream=stream, priority_prefix="auto")
        try:
            logs.event("hello", logging.WARNING, n=1)
            stream.seek(0)
            line = stream.read().splitlines()[-1]
        finally:
            logs.setup("info", "logfmt")
        assert line.startswith("<4>{") and json.loads(line[3:])["event"] == "hello"
        monkeypatch.setenv("JOURNAL_STREAM", "1:2")
        assert not logs.stderr_is_journal(stream)
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not logs.stderr_is_journal(io.StringIO())


def collected(headers: list[tuple[str, bytes]], rcpts: list[str], mail_from: str | None = "b@Bounce.Example") -> CollectedMessage:
    msg = CollectedMessage(mail_from=mail_from, rcpt_to=rcpts, headers=[], body=Spool(1024, ""),
                           max_message_bytes=10_000, max_parse_bytes=10_000)
    for name, value in headers:
        msg.add_header(name, value)
    msg.add_body(b"body\r\n")
    return msg


def test_the_message_line_says_sender_domain_recipients_message_id_and_size() -> None:
    msg = collected([("Subject", b"x"), ("Message-ID", b" <a1@example.net>")], ["u@test.example", "v@test.example"])
    facts = message_facts(msg)
    assert facts == {"sender_domain": "bounce.example", "rcpts": 2, "message_id": "<a1@example.net>",
                     "size": msg.size}
    fields = logs.message_fields(queue_id="Q1", decision=Decision(level=Level.CLEAN, score=0.0), action="none",
                                 ms=1.0, facts=facts)
    line = logs.logfmt(fields.items())
    assert "sender_domain=bounce.example rcpts=2 message_id=<a1@example.net> size=" in line
    # A hostile Message-ID is cut short and cannot break the line or forge a field.
    evil = collected([("Message-ID", b"<x@y>\n verdict=clean " + b"A" * 5000)], [], mail_from="")
    facts = message_facts(evil)
    assert len(facts["message_id"]) == MAX_MESSAGE_ID and facts["sender_domain"] == "-" and facts["rcpts"] == 0
    assert "\n" not in logs.logfmt(facts.items())
    assert message_facts(None) == {}


@pytest.mark.integration
def test_serve_prefixes_its_lines_for_the_journal(tmp_path: Path) -> None:
    """`otpguard serve` with stderr as the journal (JOURNAL_STREAM set by systemd): info lines
    are <6>, a refused reload is <3>."""
    cfg = write_test_config(tmp_path / "otpguard.toml", socket_spec=f"inet:127.0.0.1:{free_port()}",
                            changes={'format = "logfmt"': 'format = "json"'})
    log = tmp_path / "stderr.log"
    with log.open("wb") as err:
        st = os.fstat(err.fileno())
        proc = subprocess.Popen([OTPGUARD, "serve", "--config", str(cfg)], stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    try:
        deadline = time.monotonic() + 30
        while b'"event":"listening"' not in log.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        cfg.write_text(cfg.read_text() + "\n[nonsense]\n")
        proc.send_signal(signal.SIGHUP)
        while b"reload_failed" not in log.read_bytes():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(30)
    lines = log.read_text().splitlines()
    listening = next(ln for ln in lines if '"event":"listening"' in ln)
    failed = next(ln for ln in lines if '"event":"reload_failed"' in ln)
    assert listening.startswith("<6>{") and failed.startswith("<3>{")
    assert json.loads(failed[3:])["key"] == "nonsense"
