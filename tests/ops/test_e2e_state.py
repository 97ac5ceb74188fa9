"""Two `otpguard serve` instances sharing one real redis-server, through a real Postfix (issue 5).

Postfix has one listener per milter ("a" and "b"), as two MX hosts would each have their own.
Both milters use state.backend = "redis" with the same redis-server on loopback, so genuine
Amazon code mails to one recipient count together whichever instance sees them. Then Redis is
stopped in the middle of a run: mail must keep flowing, each lost count is an error of stage
"state" in /metrics, and the outage is logged once per interval, not once per message.

"Genuine" comes from a trusted upstream Authentication-Results header (auth.trusted_authserv_ids),
as a border MTA in front of the MX would add it; no DNS is involved.
"""
from __future__ import annotations

import concurrent.futures
import re
import shutil
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from email.header import decode_header, make_header
from pathlib import Path
from typing import Iterator

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from otpguard.ops.state import hashed_key
from conftest import TRUSTED_ID, genuine_code_mail
from support.postfix import (OTPGUARD, OtpguardServer, PostfixInstance, free_port,
                             header, postfix_instance_factory, shared_tmpdir,
                             write_test_config)
from support.redisserver import RedisServer, require_redis_server

KEY_PREFIX = "otpguard-e2e:"
SALT = "e2e-salt"
LOG_INTERVAL = 2  # state.error_log_interval_seconds
BURST_PREFIX_JA = "[身に覚えのないコード?]"  # conf/otpguard.toml [bursts.subject_prefix] ja
ORIGINAL_SUBJECT = "Amazon.co.jp: ワンタイムパスワード"


@dataclass
class Duo:
    work: Path
    pf: PostfixInstance
    redis: RedisServer
    servers: dict[str, OtpguardServer]
    metrics: dict[str, str]


@pytest.fixture(scope="module")
def duo() -> Iterator[Duo]:
    binary = require_redis_server()
    work = shared_tmpdir("otpguard-e2e-state-")
    (work / "sock").mkdir(mode=0o755)
    rs = RedisServer(work / "redis", binary=binary)
    socks = {name: f"unix:{work}/sock/{name}.sock" for name in ("a", "b")}
    servers: dict[str, OtpguardServer] = {}
    postfix = postfix_instance_factory(socks, root=work / "postfix")
    try:
        pf = next(postfix)
        rs.start()
        metrics = {}
        for name, sock in socks.items():
            cfg = write_test_config(work / f"{name}.toml", socket_spec=sock, changes={
                'format = "logfmt"': 'format = "json"',
                'clean = []': 'clean = ["tag"]',
                'genuine = []': 'genuine = ["tag"]',
                "trusted_authserv_ids = []": f'trusted_authserv_ids = ["{TRUSTED_ID}"]',
                'backend = "memory"': 'backend = "redis"',
                'redis_url = ""': f'redis_url = "{rs.url}"',
                'key_prefix = "otpguard:"': f'key_prefix = "{KEY_PREFIX}"',
                'hash_salt = ""': f'hash_salt = "{SALT}"',
                "error_log_interval_seconds = 60": f"error_log_interval_seconds = {LOG_INTERVAL}",
            })
            port = free_port()
            metrics[name] = f"http://127.0.0.1:{port}/metrics"
            servers[name] = OtpguardServer(config=cfg, socket=sock, log=work / f"{name}.log",
                                           command=(OTPGUARD, "serve", "--metrics", f"127.0.0.1:{port}")).start()
        yield Duo(work=work, pf=pf, redis=rs, servers=servers, metrics=metrics)
    finally:
        for server in servers.values():
            server.stop()
        postfix.close()
        rs.stop()
        shutil.rmtree(work, ignore_errors=True)


# --- helpers ---------------------------------------------------------------------------------


def ordinary_mail(message_id: str) -> bytes:
    return (f"From: Tanaka <tanaka@example.co.jp>\r\nTo: user@test.example\r\nSubject: minutes\r\n"
            f"Message-ID: {message_id}\r\n\r\nThe minutes of today's meeting are attached.\r\n").encode()


def send(pf: PostfixInstance, listener: str, raw: bytes, rcpt: str) -> None:
    code, reply = pf.send(raw, listener=listener, mail_from="bounce@bounces.amazon.co.jp", rcpts=(rcpt,))
    assert code == 250, (listener, rcpt, code, reply)


def delivered_by_message_id(pf: PostfixInstance) -> dict[str, bytes]:
    out = {}
    for m in pf.delivered():
        hit = re.search(rb"(?im)^Message-ID:[ \t]*(<[^>\r\n]+>)", m.raw.split(b"\n\n", 1)[0])
        if hit:
            out[hit.group(1).decode()] = m.raw
    return out


def wait_delivered(pf: PostfixInstance, mids: set[str], timeout: float = 30) -> dict[str, bytes]:
    got: dict[str, bytes] = {}

    def done() -> bool:
        got.clear()
        got.update(delivered_by_message_id(pf))
        return mids <= set(got)

    pf.wait_for(done, timeout, f"delivery of {len(mids)} messages")
    return got




def shown_subject(raw: bytes) -> str:
    return str(make_header(decode_header(header(raw, "Subject")[0])))


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def metric(url: str, name: str, **labels: str) -> float:
    return scrape(url)[(name, tuple(sorted(labels.items())))]


def state_errors(duo: Duo, name: str) -> float:
    return metric(duo.metrics[name], "otpguard_errors_total", stage="state")


def state_log(server: OtpguardServer, word: str) -> list[dict]:
    """The state store's warning lines (stdlib logging, JSON) that contain word."""
    return [e for e in server.events("log") if e.get("logger") == "otpguard.ops.state" and word in e.get("msg", "")]


def ts(event: dict) -> float:
    """The log line's time (UTC) as a Unix time."""
    return datetime.strptime(event["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def client(duo: Duo) -> redis.Redis:
    return redis.Redis.from_url(duo.redis.url, socket_timeout=2)


def redis_key(rcpt: str) -> str:
    return KEY_PREFIX + hashed_key(f"burst:{rcpt}", SALT)


# --- tests -------------------------------------------------------------------------------------

@pytest.mark.integration
def test_genuine_code_burst_is_counted_across_two_instances(duo: Duo) -> None:
    """Code mails to one recipient alternate between the milters; the third one is marked."""
    pf = duo.pf
    pf.clear_mailbox()
    target, other = "burst@test.example", "calm@test.example"
    plan = [("a", target), ("b", target), ("a", target), ("b", target), ("a", other), ("b", other)]
    mids = []
    for i, (listener, rcpt) in enumerate(plan):
        mid = f"<burst-{i}@amazon.co.jp>"
        send(pf, listener, genuine_code_mail(mid), rcpt)  # one after the other: the order is the count
        mids.append(mid)
    got = wait_delivered(pf, set(mids))
    for mid in mids:
        assert header(got[mid], "X-OTPGuard-Verdict")[0].endswith("; genuine=yes"), mid
    notices = [header(got[mid], "X-OTPGuard-Burst") for mid in mids]
    subjects = [shown_subject(got[mid]) for mid in mids]
    # Each instance saw at most two of the four: only the shared count reaches the threshold 3.
    assert notices[0] == notices[1] == [] and subjects[0] == subjects[1] == ORIGINAL_SUBJECT
    assert len(notices[2]) == 1 and notices[2][0].startswith("count=3; "), notices[2]
    assert len(notices[3]) == 1 and notices[3][0].startswith("count=4; "), notices[3]
    for i in (2, 3):
        # The .jp brand gets the Japanese notice and subject prefix.
        assert subjects[i] == f"{BURST_PREFIX_JA} {ORIGINAL_SUBJECT}", subjects[i]
        notice = str(make_header(decode_header(notices[i][0].split("; ", 1)[1])))
        assert "パスワード" in notice, notice
    assert notices[4] == notices[5] == [] and subjects[4] == subjects[5] == ORIGINAL_SUBJECT

    # Redis holds one sorted set per recipient, under a salted hash, with a TTL.
    r = client(duo)
    try:
        keys = sorted(k.decode() for k in r.keys(KEY_PREFIX + "*"))
        assert keys == sorted([redis_key(target), redis_key(other)]), keys
        assert all(re.fullmatch(re.escape(KEY_PREFIX) + r"burst:[0-9a-f]{64}", k) for k in keys)
        assert r.zcard(redis_key(target)) == 4 and r.zcard(redis_key(other)) == 2
        assert 0 < r.ttl(redis_key(target)) <= 3600
        assert not any("test.example" in k or "burst@" in k for k in keys)
    finally:
        r.close()

    # The instance that saw the threshold counts the burst; both count their notice.
    a, b = duo.metrics["a"], duo.metrics["b"]
    assert metric(a, "otpguard_code_bursts_total") == 1 and metric(b, "otpguard_code_bursts_total") == 0
    assert metric(a, "otpguard_code_burst_notices_total") == 1
    assert metric(b, "otpguard_code_burst_notices_total") == 1
    assert metric(a, "otpguard_actions_total", action="burst_notice") == 1
    assert metric(a, "otpguard_messages_total", verdict="genuine", action="tag") == 3
    assert metric(b, "otpguard_messages_total", verdict="genuine", action="tag") == 3
    assert state_errors(duo, "a") == state_errors(duo, "b") == 0
    lines = {e["queue_id"]: e for e in duo.servers["a"].events("message")}
    assert sum(1 for e in lines.values() if "burst_notice" in e["action"]) == 1


@pytest.mark.integration
def test_redis_stopped_mid_run_mail_flows(duo: Duo) -> None:
    """Redis dies under concurrent load: every message is delivered and tagged, errors are counted,
    the outage is logged once per interval; when Redis is back, counting resumes."""
    pf, rs = duo.pf, duo.redis
    pf.clear_mailbox()
    errors0 = {n: state_errors(duo, n) for n in ("a", "b")}
    warned0 = {n: len(state_log(s, "unavailable")) for n, s in duo.servers.items()}
    # 40 messages over 4 concurrent sessions, both milters: genuine code mails (each to its own
    # recipient, so no burst) and ordinary mail; Redis is stopped after the first dozen, while
    # others are in flight, and the second half waits for the stop so that the run certainly
    # meets a dead Redis however fast the first half goes.
    jobs = []
    for i in range(40):
        listener = "ab"[i % 2]
        if i % 4 == 3:
            jobs.append((listener, f"<run-{i}@example.co.jp>", ordinary_mail(f"<run-{i}@example.co.jp>"), "user@test.example"))
        else:
            jobs.append((listener, f"<run-{i}@amazon.co.jp>", genuine_code_mail(f"<run-{i}@amazon.co.jp>"), f"run-{i}@test.example"))
    done = 0
    lock = threading.Lock()
    redis_down = threading.Event()

    def one(index: int, job: tuple[str, str, bytes, str]) -> str:
        nonlocal done
        listener, mid, raw, rcpt = job
        if index >= 20:
            assert redis_down.wait(60)
        send(pf, listener, raw, rcpt)
        with lock:
            done += 1
        return mid

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(one, i, job) for i, job in enumerate(jobs)]
        deadline = time.monotonic() + 30
        while done < 12:
            assert time.monotonic() < deadline, "the first messages did not go through"
            time.sleep(0.01)
        rs.stop()
        redis_down.set()
        stopped = time.monotonic()
        sent = [f.result(timeout=60) for f in futures]  # each asserted a 250
    got = wait_delivered(pf, set(sent))
    for mid in sent:
        verdict = header(got[mid], "X-OTPGuard-Verdict")
        assert len(verdict) == 1 and not verdict[0].startswith("error"), (mid, verdict)
        assert ("; genuine=yes" in verdict[0]) == ("amazon.co.jp" in mid), (mid, verdict)

    # With Redis certainly down: K more code mails per instance cost exactly K state errors each.
    k = 4
    before = {n: state_errors(duo, n) for n in ("a", "b")}
    for n in ("a", "b"):
        for i in range(k):
            send(pf, n, genuine_code_mail(f"<down-{n}-{i}@amazon.co.jp>"), f"down-{n}-{i}@test.example")
    for n in ("a", "b"):
        assert state_errors(duo, n) - before[n] == k, n
        assert state_errors(duo, n) - errors0[n] >= k + 1  # the concurrent run failed some too
    wait_delivered(pf, {f"<down-{n}-{i}@amazon.co.jp>" for n in ("a", "b") for i in range(k)})

    # Keep the outage going past one log interval after each instance's first report, with
    # mail, to see the second report.
    first = max(ts(state_log(s, "unavailable")[warned0[n]]) for n, s in duo.servers.items())
    while time.time() < first + LOG_INTERVAL + 0.3:
        time.sleep(0.1)
    for n in ("a", "b"):
        send(pf, n, genuine_code_mail(f"<late-{n}@amazon.co.jp>"), f"late-{n}@test.example")
    outage = time.monotonic() - stopped
    for n, server in duo.servers.items():
        failed = state_errors(duo, n) - errors0[n]
        warned = state_log(server, "unavailable")[warned0[n]:]
        stamps = [ts(e) for e in warned]
        print(f"\ninstance {n}: {failed:.0f} state operations failed in {outage:.1f}s of outage, "
              f"{len(warned)} log lines")
        assert 2 <= len(warned) <= outage / LOG_INTERVAL + 1, (n, [e["msg"] for e in warned])
        assert len(warned) < failed
        assert all(b - a >= LOG_INTERVAL - 0.05 for a, b in zip(stamps, stamps[1:])), stamps
        assert re.search(r"\((\d+) operations not counted", warned[-1]["msg"]), warned[-1]["msg"]
        assert "test.example" not in " ".join(e["msg"] for e in warned)

    # Redis is back (empty: nothing persisted): counting resumes on both instances.
    rs.start()
    time.sleep(1.2)  # state.RETRY_AFTER_SECONDS: the store rests for a second after a failure
    before = {n: state_errors(duo, n) for n in ("a", "b")}
    for n in ("a", "b"):
        send(pf, n, genuine_code_mail(f"<back-{n}@amazon.co.jp>"), f"back-{n}@test.example")
    r = client(duo)
    try:
        for n in ("a", "b"):
            assert r.zcard(redis_key(f"back-{n}@test.example")) == 1, n
            assert state_errors(duo, n) == before[n], n
            assert state_log(duo.servers[n], "available again"), n
    finally:
        r.close()
