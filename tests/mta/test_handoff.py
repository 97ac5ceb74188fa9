"""The hand-off to analysis workers, piece by piece: the encoding, the wire, how many workers."""
from __future__ import annotations

import dataclasses
import decimal
import os
import socket
import tempfile
import threading
from pathlib import Path

import pytest

from conftest import need_corpus
from otpguard.config import MilterConfig
from otpguard.core.model import AuthSummary, Decision, DkimResult, Envelope, Level, ScoredHit
from otpguard.mta import codec, pool, wire
from otpguard.mta.spool import CollectedMessage, Spool
from otpguard.mta.worker import CallRecorder
from support.postfix import strip_mbox_from


# --- the encoding ----------------------------------------------------------------------------

def test_every_decision_of_the_dev_corpus_crosses_unchanged(engine) -> None:
    root = need_corpus()
    decisions = [engine.analyse(strip_mbox_from(p.read_bytes()), Envelope())
                 for d in ("phish", "legit", "hardneg") for p in sorted((root / d).glob("*.eml"))]
    assert len(decisions) > 100 and any(d.hits for d in decisions)
    with_auth = dataclasses.replace(decisions[0], genuine=True, notes=("a", "b"), auth=AuthSummary(
        source="local", spf="pass", spf_domain="amazon.co.jp", dmarc="pass", from_domain="amazon.co.jp",
        dkim=(DkimResult(domain="amazon.co.jp", selector="s1", result="pass"),
              DkimResult(domain="x.example", selector="s2", result="fail"))))
    for d in [*decisions, with_auth]:
        data = codec.encode(d, Decision, [("dns_query", (0.01, "ok"), {})])
        assert data[:1] == codec.MARSHAL  # the fast path, not pickle
        back, extra = codec.decode(data, Decision)
        assert back == d and type(back.level) is Level and type(back.hits) is tuple
        assert extra == [("dns_query", (0.01, "ok"), {})]


def test_envelopes_cross_unchanged() -> None:
    env = Envelope(client_ip="192.0.2.1", client_name=None, helo="mx.example", mail_from="a@b.example",
                   rcpt_to=("c@d.example", "\udcffodd@e.example"), queue_id="4ABC")
    back, _ = codec.decode(codec.encode(env, Envelope), Envelope)
    assert back == env and type(back.rcpt_to) is tuple


def test_an_unexpected_value_falls_back_to_pickle_and_still_crosses() -> None:
    # A field holding something marshal cannot write (a Decimal here) must not be lost.
    odd = Decision(level=Level.CLEAN, score=decimal.Decimal("1.5"))  # type: ignore[arg-type]
    data = codec.encode(odd, Decision)
    assert data[:1] == codec.PICKLE
    assert codec.decode(data, Decision)[0] == odd
    wrong = Decision(level=Level.CLEAN, score=0.0, hits=(Envelope(),))  # type: ignore[arg-type]
    assert codec.encode(wrong, Decision)[:1] == codec.PICKLE


def test_garbage_is_refused() -> None:
    with pytest.raises(ValueError):
        codec.decode(b"x123", Decision)
    with pytest.raises(ValueError):
        codec.decode(codec.encode(Envelope(), Envelope), Decision)


# --- the wire ----------------------------------------------------------------------------------

def test_a_message_in_memory_crosses_once_in_the_request() -> None:
    ours, theirs = socket.socketpair()
    raw = b"Subject: x\r\n\r\n" + os.urandom(300_000)  # larger than a socket buffer
    env = codec.encode(Envelope(queue_id="Q1"), Envelope)
    sender = threading.Thread(target=wire.send_request, args=(ours, env, raw), kwargs={"truncated": True})
    sender.start()
    req = wire.recv_request(theirs)
    sender.join()
    assert req is not None and req.data == raw and req.body_fd is None and req.truncated
    assert codec.decode(req.envelope, Envelope)[0].queue_id == "Q1"
    ours.close()
    assert wire.recv_request(theirs) is None  # the milter closed the slot
    theirs.close()


def test_a_spooled_body_does_not_cross_its_file_does() -> None:
    """The header section goes in the request; the worker reads the body from the spool file."""
    msg = CollectedMessage(mail_from="a@b", rcpt_to=[], headers=[], body=Spool(0, tempfile.gettempdir()),
                           max_message_bytes=10**8, max_parse_bytes=10**8)
    msg.add_header("Subject", b"big")
    body = os.urandom(200_000)
    msg.add_body(body)
    assert msg.body.on_disk
    ours, theirs = socket.socketpair()
    wire.send_request(ours, b"", msg.head(), truncated=False, body_fd=msg.body.fileno(), body_len=msg.kept)
    req = wire.recv_request(theirs)
    assert req is not None and req.data == b"Subject: big\r\n\r\n" and req.body_fd is not None
    try:
        assert req.data + wire.read_body(req.body_fd, req.body_len) == msg.raw()
    finally:
        os.close(req.body_fd)
    msg.body.close()
    ours.close()
    theirs.close()


def test_replies_are_read_whole_or_time_out() -> None:
    import time

    ours, theirs = socket.socketpair()
    wire.send_reply(theirs, wire.OK, b"x" * 100_000)
    assert wire.recv_reply(ours, time.monotonic() + 5) == (wire.OK, b"x" * 100_000)
    with pytest.raises(TimeoutError):
        wire.recv_reply(ours, time.monotonic() + 0.05)
    theirs.close()
    with pytest.raises(ConnectionError):
        wire.recv_reply(ours, time.monotonic() + 5)
    ours.close()


def test_the_recorder_carries_metric_calls_of_one_message_only() -> None:
    rec = CallRecorder()
    rec.dns_query(0.5, "ok")  # outside a message: nobody to send it to
    rec.begin()
    rec.dns_query(0.01, "nxdomain")
    rec.record_error(stage="dns")
    assert rec.end() == [("dns_query", (0.01, "nxdomain"), {}), ("record_error", (), {"stage": "dns"})]
    assert rec.end() == []
    with pytest.raises(AttributeError):
        rec._private  # noqa: B018


# --- how many workers --------------------------------------------------------------------------

@pytest.mark.parametrize("setting,cpus,expected", [("auto", 1, 1), ("auto", 2, 2), ("auto", 6, 6), ("auto", 64, 8),
                                                   (1, 16, 1), (3, 1, 3), ("AUTO", 4, 4)])
def test_worker_count(setting, cpus, expected) -> None:
    assert pool.worker_count(MilterConfig(workers=setting), cpus) == expected


def test_describe_workers() -> None:
    assert pool.describe_workers(MilterConfig(workers="auto"), 2) == "2 (auto: 2 usable CPUs, at most 8)"
    assert pool.describe_workers(MilterConfig(workers="auto"), 1) == \
        "1 (auto: 1 usable CPU, at most 8) (in the milter process)"
    assert pool.describe_workers(MilterConfig(workers=1), 8) == "1 (in the milter process)"
    assert pool.describe_workers(MilterConfig(workers=4), 2) == "4"


def test_a_cgroup_cpu_quota_bounds_the_usable_cpus(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("0::/system.slice/otpguard.service\n")
    service = tmp_path / "fs" / "system.slice" / "otpguard.service"
    service.mkdir(parents=True)
    (service / "cpu.max").write_text("max 100000\n")
    (service.parent / "cpu.max").write_text("250000 100000\n")  # the slice: 2.5 CPUs
    assert pool.cgroup_cpu_limit(proc, tmp_path / "fs") == 2.5
    (service / "cpu.max").write_text("50000 100000\n")
    assert pool.cgroup_cpu_limit(proc, tmp_path / "fs") == 0.5
    proc.write_text("1:cpu:/\n")  # cgroup v1 only: no v2 quota to read
    assert pool.cgroup_cpu_limit(proc, tmp_path / "fs") is None
    assert 1 <= pool.usable_cpus() <= (os.cpu_count() or 1)
