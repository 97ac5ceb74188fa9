"""Analysis in worker processes (`[milter] workers`, issue 17), driven over the milter protocol.

Each test runs real `otpguard serve` processes (the milter, its zygote, its workers) and talks to
them as Postfix does (tests/support/milterproto.py): Postfix's negotiation and macros, real
corpus mail, the modifications end of message asks for. No MTA is needed to see what a worker
that dies, hangs or is reloaded costs; tests/mta/test_faults.py does the same through Postfix.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import TRUSTED_ID, genuine_code_mail, need_corpus
from support.milterproto import Conversation, EomResult
from support.postfix import OTPGUARD, OtpguardServer, free_port, shared_tmpdir, strip_mbox_from, write_test_config

SLOW_SERVE = Path(__file__).resolve().parents[1] / "fixtures" / "milter" / "slow_serve.py"
JSON_LOGS = {'format = "logfmt"': 'format = "json"'}
# Every verdict tagged: the symbols header carries each symbol, its score and its reason.
TAG_ALL = {'clean = []': 'clean = ["tag"]', 'genuine = []': 'genuine = ["tag"]'}
WORKERS = 'workers = "auto"'


INLINE = "inline_max_bytes = 2048"


def workers(n: int, inline: bool = False) -> dict[str, str]:
    """workers = n; every message to a worker unless inline (small ones stay in the milter)."""
    return {WORKERS: f"workers = {n}", **({} if inline else {INLINE: "inline_max_bytes = 0"})}


@pytest.fixture
def work() -> Iterator[Path]:
    path = shared_tmpdir("otpguard-workers-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Milter:
    server: OtpguardServer
    metrics_port: int | None = None

    @property
    def address(self) -> str:
        return self.server.socket

    def conversation(self) -> Conversation:
        return Conversation(self.address)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics()[(name, tuple(sorted(labels.items())))]

    def events(self, name: str) -> list[dict]:
        return self.server.events(name)

    def stop(self) -> int | None:
        return self.server.stop()


def start(work: Path, name: str, changes: dict[str, str], *, slow: dict[str, str] | None = None,
          metrics: bool = False) -> Milter:
    """`otpguard serve` on a unix socket with the shipped config changed by `changes`."""
    sock = f"unix:{work}/{name}.sock"
    port = free_port() if metrics else None
    edits = {**JSON_LOGS, **changes}
    if port is not None:
        edits["[metrics]\nenabled = true"] = "[metrics]\nenabled = true"
        edits['listen = "127.0.0.1:9469"'] = f'listen = "127.0.0.1:{port}"'
    cfg = write_test_config(work / f"{name}.toml", socket_spec=sock, changes=edits)
    command = (sys.executable, str(SLOW_SERVE)) if slow is not None else (OTPGUARD, "serve")
    server = OtpguardServer(config=cfg, socket=sock, log=work / f"{name}.log", command=command, env=slow).start()
    return Milter(server=server, metrics_port=port)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout:g}s waiting for {what}"
        time.sleep(0.05)


def message(tag: str, body: str = "The nightly job finished without errors.") -> bytes:
    return (f"From: Build Robot <robot@sender.example>\r\nTo: user@test.example\r\nSubject: report {tag}\r\n"
            f"Message-ID: <{tag}@sender.example>\r\nDate: Tue, 14 May 2024 09:12:45 +0000\r\n\r\n"
            f"{body}\r\n{tag}\r\n").encode()


def verdict(result: EomResult) -> str:
    values = result.header("X-OTPGuard-Verdict")
    assert len(values) == 1, result
    return values[0]


def worker_pids(m: Milter) -> list[int]:
    """The pids of the workers running now (the last "workers" event and the replacements since)."""
    pids = list(m.events("workers")[-1]["pids"])
    for lost, started in zip(m.events("worker_lost"), m.events("worker_started")):
        pids = [started["pid"] if p == lost["pid"] else p for p in pids]
    return pids


def processes_of(pid: int) -> set[int]:
    """Every live descendant of pid (the zygote and the workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


# --- the same verdicts as one process ------------------------------------------------------------

def corpus_messages() -> list[tuple[str, bytes]]:
    root = need_corpus()
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.endswith((".tsv", ".md")) and not path.name.startswith("."):
            raw = strip_mbox_from(path.read_bytes())
            if raw.strip():
                out.append((str(path.relative_to(root)), raw))
    return out


def effect(result: EomResult) -> tuple:
    """Everything end of message asked the MTA to do."""
    return (result.final, result.reply, tuple(result.headers_added), tuple(result.headers_changed),
            result.quarantine, result.body)


@pytest.mark.integration
def test_workers_judge_the_whole_corpus_exactly_as_one_process(work: Path) -> None:
    """Every corpus message through workers = 1 and workers = 2: the same headers, reasons,
    subject changes, quarantine and reply, byte for byte."""
    messages = corpus_messages()
    assert len(messages) > 6000
    one = start(work, "one", {**TAG_ALL, **workers(1)})
    two = start(work, "two", {**TAG_ALL, **workers(2)})
    try:
        assert not processes_of(one.server.pid), "workers = 1 must stay one process"
        assert len(processes_of(two.server.pid)) == 3  # the zygote and two workers
        differences: list[str] = []
        lock = threading.Lock()

        def run(part: list[tuple[str, bytes]]) -> None:
            with one.conversation() as a, two.conversation() as b:
                for name, raw in part:
                    ea, eb = effect(a.message(raw)), effect(b.message(raw))
                    if ea != eb:
                        with lock:
                            differences.append(f"{name}: {ea} != {eb}")

        parts = [messages[i::8] for i in range(8)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(run, parts))
        assert differences == [], differences[:5]
        levels = {v["verdict"] for v in two.events("message")}
        assert {"clean", "suspicious", "phish"} <= levels
        assert len(two.events("message")) == len(messages)
    finally:
        one.stop()
        two.stop()


@pytest.mark.integration
def test_spooled_messages_reach_the_worker_as_a_file_and_get_the_same_banner(work: Path) -> None:
    """spool_bytes = 0 spools every body to disk: the worker reads it from the passed file; the
    verdict is the one of a single process, and a banner (which rewrites the body) still works."""
    changes = {**TAG_ALL, "spool_bytes = 1048576": "spool_bytes = 0",
               'suspicious = ["tag", "subject"]': 'suspicious = ["tag", "subject", "banner"]',
               'phish = ["tag", "quarantine"]': 'phish = ["tag", "banner"]'}
    one = start(work, "one", {**changes, **workers(1)})
    two = start(work, "two", {**changes, **workers(2)})
    try:
        root = need_corpus()
        sample = [strip_mbox_from(p.read_bytes()) for d in ("phish", "legit", "hardneg")
                  for p in sorted((root / d).glob("*.eml"))]
        bannered = 0
        with one.conversation() as a, two.conversation() as b:
            for raw in sample:
                ea, eb = a.message(raw), b.message(raw)
                assert effect(ea) == effect(eb)
                bannered += eb.body is not None
        assert bannered >= 10
    finally:
        one.stop()
        two.stop()


# --- small messages stay in the milter process -----------------------------------------------------

@pytest.mark.integration
def test_small_messages_are_analysed_in_the_milter_process_and_larger_ones_in_a_worker(work: Path) -> None:
    """milter.inline_max_bytes (2048 as shipped): with every worker stopped (SIGSTOP), a short
    message is still judged at once, by the milter process; a longer one waits for a worker and
    gets its on_error answer at the budget."""
    m = start(work, "inline", {**TAG_ALL, **workers(2, inline=True),
                               "time_budget_seconds = 10.0": "time_budget_seconds = 1.0"})
    pids = worker_pids(m)
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        with m.conversation() as conv:
            small = message("small")
            large = message("large", "The nightly job finished without errors. " * 60)
            assert len(small) < 2048 < len(large)
            t0 = time.monotonic()
            assert verdict(conv.message(small)).startswith("clean")
            assert time.monotonic() - t0 < 0.9, "a small message must not wait for a worker"
            t0 = time.monotonic()
            assert verdict(conv.message(large)) == "error"
            assert 0.9 <= time.monotonic() - t0 < 4.0
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:  # killed for the overrun, as it should be
                pass
        m.stop()


# --- a worker that dies or hangs ------------------------------------------------------------------

@pytest.mark.integration
def test_a_killed_worker_costs_only_the_message_it_held(work: Path) -> None:
    """kill -9 of the worker analysing message A: A gets the on_error answer at once, message B
    on the other worker and A's connection are unharmed, and the worker is replaced."""
    m = start(work, "kill", {**TAG_ALL, **workers(2)}, metrics=True,
              slow={"OTPGUARD_TEST_SLOW": "4", "OTPGUARD_TEST_SLOW_MARKER": "SLOW-PLEASE"})
    try:
        listening = m.events("listening")[0]
        assert listening["workers"] == 2 and listening["workers_setting"] == 2
        pids = worker_pids(m)
        assert len(pids) == 2 and set(pids) <= processes_of(m.server.pid)
        a, b = m.conversation(), m.conversation()
        results: dict[str, tuple[EomResult, float]] = {}

        def send(conv: Conversation, tag: str) -> None:
            t0 = time.monotonic()
            results[tag] = (conv.message(message(tag, "SLOW-PLEASE")), time.monotonic() - t0)

        threads = [threading.Thread(target=send, args=(a, "msg-a")), threading.Thread(target=send, args=(b, "msg-b"))]
        for t in threads:
            t.start()
            time.sleep(0.2)
        time.sleep(0.8)  # both are being analysed now, one per worker (the least busy one is taken)
        os.kill(pids[0], signal.SIGKILL)
        for t in threads:
            t.join(30)
        answers = sorted(verdict(r) for r, _ in results.values())
        assert answers[0].startswith("clean") and answers[1] == "error", answers
        killed = next(tag for tag, (r, _) in results.items() if verdict(r) == "error")
        assert results[killed][1] < 3.5, "the killed worker's message must not wait for the 4 s analysis"
        # The connection that lost its analysis goes on: its next message is analysed normally.
        conn = a if killed == "msg-a" else b
        assert verdict(conn.message(message("after-kill"))).startswith("clean")
        a.close()
        b.close()
        wait_until(lambda: m.events("worker_started"), 20, "a replacement worker")
        lost = m.events("worker_lost")
        assert len(lost) == 1 and lost[0]["pid"] == pids[0] and lost[0]["cause"] == "killed by SIGKILL"
        assert lost[0]["replaced"] == "yes"
        errors = [e for e in m.events("message") if "error" in e]
        assert len(errors) == 1 and errors[0]["error"].startswith("worker: ") and errors[0]["action"] == "error-accept"
        wait_until(lambda: m.metric("otpguard_workers") == 2, 10, "two workers ready again")
        assert m.metric("otpguard_worker_restarts_total", reason="died") == 1
        assert m.metric("otpguard_errors_total", stage="worker") == 1
        new = worker_pids(m)
        assert pids[0] not in new and len(new) == 2 and set(new) <= processes_of(m.server.pid)
    finally:
        m.stop()


@pytest.mark.integration
@pytest.mark.parametrize("on_error", ["accept", "tempfail"])
def test_an_analysis_that_overruns_is_answered_at_the_budget_and_its_worker_replaced(work: Path, on_error: str) -> None:
    """A message stuck in a Python loop gets its on_error answer at the budget; its worker is
    killed (it would spin on for ever) and replaced; the next messages are analysed."""
    m = start(work, "spin", {**TAG_ALL, **workers(2), "time_budget_seconds = 10.0": "time_budget_seconds = 1.0",
                             'on_error = "accept"': f'on_error = "{on_error}"'}, metrics=True,
              slow={"OTPGUARD_TEST_SLOW": "60", "OTPGUARD_TEST_SLOW_MODE": "spin",
                    "OTPGUARD_TEST_SLOW_MARKER": "SPIN-FOR-EVER"})
    try:
        pids = worker_pids(m)
        with m.conversation() as conv:
            t0 = time.monotonic()
            stuck = conv.message(message("stuck", "SPIN-FOR-EVER"))
            took = time.monotonic() - t0
            if on_error == "accept":
                assert stuck.final == b"c" and verdict(stuck) == "error"
            else:
                assert stuck.final == b"y" and stuck.reply.startswith(b"451 4.3.0")
            assert took < 4.0, took
            for i in range(5):
                assert verdict(conv.message(message(f"next-{i}"))).startswith("clean")
        wait_until(lambda: m.events("worker_lost"), 10, "the overrunning worker's end")
        lost = m.events("worker_lost")[0]
        assert lost["pid"] in pids and lost["cause"] == "killed: a message overran the 1 s time budget"
        assert lost["pid"] not in processes_of(m.server.pid)
        wait_until(lambda: m.metric("otpguard_workers") == 2, 10, "two workers ready again")
        assert m.metric("otpguard_worker_restarts_total", reason="overran") == 1
        assert m.metric("otpguard_errors_total", stage="timeout") == 1
        line = [e for e in m.events("message") if "error" in e][0]
        assert "AnalysisTimeout" in line["error"] and line["action"] == f"error-{on_error}"
    finally:
        m.stop()


@pytest.mark.integration
def test_messages_of_a_worker_killed_for_another_ones_overrun_are_analysed_again(work: Path) -> None:
    """One worker holds two messages: A overruns, B is innocent. A gets on_error; B is sent
    again, to the replacement, and judged normally within its own budget."""
    budget = 4.0
    m = start(work, "retry", {**TAG_ALL, **workers(1), "time_budget_seconds = 10.0": f"time_budget_seconds = {budget}"},
              slow={"OTPGUARD_TEST_POOL_FROM": "1", "OTPGUARD_TEST_SLOW": "60", "OTPGUARD_TEST_SLOW_MODE": "sleep",
                    "OTPGUARD_TEST_SLOW_MARKER": "SLEEP-FOR-EVER"})
    try:
        assert len(processes_of(m.server.pid)) == 2  # a pool of one worker, and the zygote
        results: dict[str, EomResult] = {}

        def send(tag: str, body: str) -> None:
            with m.conversation() as conv:
                results[tag] = conv.message(message(tag, body))

        t0 = time.time()
        a = threading.Thread(target=send, args=("guilty", "SLEEP-FOR-EVER"))
        a.start()
        time.sleep(2.0)
        # B naps until just after A's worker is killed: in flight then, quick when sent again.
        b = threading.Thread(target=send, args=("innocent", f"NAP-UNTIL-{t0 + budget + 0.3:.3f}"))
        b.start()
        a.join(30)
        b.join(30)
        assert verdict(results["guilty"]) == "error"
        assert verdict(results["innocent"]).startswith("clean"), results["innocent"]
        lost = m.events("worker_lost")
        assert len(lost) == 1 and lost[0]["cause"].startswith("killed: a message overran")
        lines = {e["verdict"]: e for e in m.events("message")}
        assert "error" in lines and "clean" in lines and "error" not in lines["clean"]
    finally:
        m.stop()


@pytest.mark.integration
def test_a_lost_zygote_is_forked_again_and_workers_are_still_replaced(work: Path) -> None:
    m = start(work, "zygote", {**TAG_ALL, **workers(2)})
    try:
        tree = processes_of(m.server.pid)
        pids = worker_pids(m)
        zygote = next(p for p in tree if p not in pids)
        os.kill(zygote, signal.SIGKILL)
        wait_until(lambda: m.events("zygote_lost"), 10, "the zygote's loss noticed")
        with m.conversation() as conv:  # the workers of the lost zygote still serve
            assert verdict(conv.message(message("orphans"))).startswith("clean")
        os.kill(pids[0], signal.SIGKILL)
        wait_until(lambda: m.events("worker_started"), 20, "a replacement from the new zygote")
        with m.conversation() as conv:
            for i in range(4):
                assert verdict(conv.message(message(f"after-{i}"))).startswith("clean")
        assert m.events("worker_lost")[0]["pid"] == pids[0]
    finally:
        m.stop()


@pytest.mark.integration
def test_workers_that_cannot_start_refuse_the_reload_and_keep_the_old_ones(work: Path) -> None:
    marker = "WORKERS-CANNOT-START"
    m = start(work, "refuse", {**TAG_ALL, **workers(2)}, slow={"OTPGUARD_TEST_SLOW": "0",
                                                             "OTPGUARD_TEST_WORKER_FAILS_ON": marker})
    path = m.server.config
    try:
        before = worker_pids(m)
        path.write_text(path.read_text().replace("(otpguard)", f"(otpguard) {marker}", 1))
        m.server.signal(signal.SIGHUP)
        wait_until(lambda: m.events("reload_failed"), 30, "the refused reload")
        failed = m.events("reload_failed")[0]
        assert "analysis worker could not start" in failed["problem"] and "cannot be built" in failed["problem"]
        assert m.events("worker_failed") and not m.events("reload")
        with m.conversation() as conv:  # the old workers still serve
            assert verdict(conv.message(message("still-served"))).startswith("clean")
        assert worker_pids(m) == before
        wait_until(lambda: len(processes_of(m.server.pid)) == 3, 10, "the failed workers gone")
    finally:
        m.stop()
    # At start, the same configuration is refused with one line and a non-zero exit.
    proc = subprocess.run([sys.executable, str(SLOW_SERVE), "--config", str(path), "--socket", m.address],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "OTPGUARD_TEST_WORKER_FAILS_ON": marker})
    assert proc.returncode == 1
    assert "analysis worker could not start" in proc.stderr and "cannot be built" in proc.stderr


# --- reloads, bursts, shutdown ------------------------------------------------------------------

# Suspicious (9.0) as shipped, 9.75 with OTP_LURE = 3.25: still suspicious, another score.
CODE_MAIL = (b"From: Amazon <service@shop-mail.example>\r\nTo: user@test.example\r\n"
             b"Subject: Your verification code\r\nMessage-ID: <code-%d@shop-mail.example>\r\n\r\n"
             b"Your Amazon verification code is 482913. Do not share it.\r\n")
RELOADED_PREFIX = "[RELOADED-B]"


@pytest.mark.integration
def test_a_reload_under_load_never_mixes_two_configurations(work: Path) -> None:
    """SIGHUP again and again, alternating configs A and B, while messages flow over six
    connections. B weighs OTP_LURE differently (the analysis, in the workers) and prefixes the
    subject of suspicious mail (the actions, in the milter): every message shows both or neither."""
    base = {**TAG_ALL, **workers(2), "OTP_LURE = 2.5": "OTP_LURE = 2.5"}
    m = start(work, "reload", base)
    path = m.server.config
    text_a = path.read_text()
    text_b = text_a.replace("OTP_LURE = 2.5", "OTP_LURE = 3.25", 1).replace(
        '[actions.subject_prefix]\nsuspicious = "[SUSPICIOUS]"', f'[actions.subject_prefix]\nsuspicious = "{RELOADED_PREFIX}"', 1)
    assert text_b.count("3.25") == 1 and RELOADED_PREFIX in text_b
    try:
        with m.conversation() as conv:
            score_a = verdict(conv.message(CODE_MAIL % 0))
        assert score_a.startswith("suspicious"), score_a
        stop = threading.Event()
        seen: list[tuple[str, list[str]]] = []
        lock = threading.Lock()

        def load(k: int) -> None:
            with m.conversation() as conv:
                i = 0
                while not stop.is_set():
                    r = conv.message(CODE_MAIL % (k * 100000 + i))
                    i += 1
                    with lock:
                        seen.append((verdict(r), [v for n, _, v in r.headers_changed if n == "Subject"]))

        threads = [threading.Thread(target=load, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        hups = 0
        try:
            while hups < 8:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(text_b if hups % 2 == 0 else text_a)
                os.replace(tmp, path)
                n = len(m.events("reload"))
                m.server.signal(signal.SIGHUP)
                hups += 1
                wait_until(lambda: len(m.events("reload")) > n, 30, "the reload")
                time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        scores = {v for v, _ in seen}
        assert len(scores) == 2, scores  # both configurations were in force
        score_b = (scores - {score_a}).pop()
        mixed = []
        for v, subjects in seen:
            assert len(subjects) == 1, subjects  # suspicious: the subject got a prefix, A's or B's
            if (v == score_b) != subjects[0].startswith(RELOADED_PREFIX):
                mixed.append((v, subjects))
        assert mixed == [], mixed[:3]
        # Every retired pool was closed once its messages were done: two workers are left.
        wait_until(lambda: len(processes_of(m.server.pid)) == 3, 20, "old workers gone")
        assert len(m.events("workers")) == hups + 1
    finally:
        m.stop()


@pytest.mark.integration
def test_code_bursts_are_counted_across_workers_with_the_memory_backend(work: Path) -> None:
    """Three genuine code mails to one recipient at once, on three connections, so on both
    workers: exactly the third one counted carries the burst notice."""
    m = start(work, "burst", {**TAG_ALL, **workers(2),
                              "trusted_authserv_ids = []": f'trusted_authserv_ids = ["{TRUSTED_ID}"]'})
    try:
        mails = [genuine_code_mail(f"<burst-{i}@amazon.co.jp>") for i in range(3)]
        convs = [m.conversation() for _ in mails]
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda cm: cm[0].message(cm[1], mail_from="bounce@bounces.amazon.co.jp",
                                                             rcpts=("victim@test.example",)), zip(convs, mails)))
        for c in convs:
            c.close()
        assert all("genuine=yes" in verdict(r) for r in results), [verdict(r) for r in results]
        notices = [r.header("X-OTPGuard-Burst") for r in results]
        assert sorted(len(n) for n in notices) == [0, 0, 1], notices
        assert [n for n in notices if n][0][0].startswith("count=3;")
    finally:
        m.stop()


@pytest.mark.integration
def test_sigterm_drains_the_workers_and_every_process_ends(work: Path) -> None:
    m = start(work, "term", {**TAG_ALL, **workers(2)}, slow={"OTPGUARD_TEST_SLOW": "1.5"})
    tree = processes_of(m.server.pid)
    assert len(tree) == 3
    result: list[EomResult] = []
    conv = m.conversation()
    t = threading.Thread(target=lambda: result.append(conv.message(message("draining"))))
    t.start()
    time.sleep(0.5)
    m.server.signal(signal.SIGTERM)
    t.join(30)
    conv.close()
    assert result and verdict(result[0]).startswith("clean")
    assert m.server.proc is not None and m.server.proc.wait(30) == 0
    assert m.events("stopping")[0]["in_flight"] == 1 and m.events("stopped")[0]["unfinished"] == 0
    assert m.events("workers_supervisor_error") == []  # the supervisor stops before the zygote closes
    wait_until(lambda: not any(Path(f"/proc/{p}").exists() for p in tree), 10, "the zygote and workers to end")
