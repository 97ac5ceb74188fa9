"""Prometheus metrics of a running `otpguard serve` after real traffic through Postfix (issue 5).

A private Postfix on loopback hands mail to otpguard on a unix socket; otpguard verifies
sender authentication against a dnsmasq on loopback and serves /metrics on a free loopback port
(`--metrics`). The expected values come from what Postfix did with each message (held or
delivered, and the verdict headers it carries), never from the milter's own bookkeeping.
Corpus mail goes over loopback only and is delivered to the instance's Maildir or held.
"""
from __future__ import annotations

import collections
import concurrent.futures
import email.utils
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from otpguard import __version__
from support.dnsserver import DnsmasqServer
from conftest import TRUSTED_ID, genuine_code_mail
from support.postfix import (OTPGUARD, OtpguardServer, PostfixInstance,
                             delivered_by_queue_id, free_port, postfix_instance_factory,
                             shared_tmpdir, strip_mbox_from, write_test_config)

ROOT = Path(__file__).resolve().parents[2]
from conftest import need_corpus  # noqa: E402
RULES = ROOT / "deploy" / "prometheus" / "otpguard-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "otpguard-dashboard.json"
RELOADED_PREFIX = "[METRICS-RELOADED]"

CONFIG = {
    'format = "logfmt"': 'format = "json"',
    'clean = []': 'clean = ["tag"]',
    'genuine = []': 'genuine = ["tag"]',
    "verify = true": "verify = true",  # write_test_config turns DNS off unless the line is named
    "trusted_authserv_ids = []": f'trusted_authserv_ids = ["{TRUSTED_ID}"]',
    "nameservers = []": 'nameservers = ["127.0.0.1"]',
    # Two analysis worker processes whatever the host: every count must still be exact, the
    # DNS latencies observed in the workers included.
    'workers = "auto"': "workers = 2",
}
# amazon.co.jp publishes SPF and a DMARC reject policy; nothing else exists (NXDOMAIN).
ZONES = {"amazon.co.jp": {"TXT": ["v=spf1 -all"]},
         "_dmarc.amazon.co.jp": {"TXT": ["v=DMARC1; p=reject"]}}


def corpus() -> Path:
    return need_corpus()


@dataclass
class Stack:
    work: Path
    pf: PostfixInstance
    server: OtpguardServer
    config: Path
    metrics_url: str
    metrics_port: int
    dns: DnsmasqServer


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    corpus()
    work = shared_tmpdir("otpguard-e2e-metrics-")
    (work / "sock").mkdir(mode=0o755)
    (work / "dns").mkdir()
    sock = f"unix:{work}/sock/otpguard.sock"
    dns: DnsmasqServer | None = None
    postfix = postfix_instance_factory({"unix": sock}, root=work / "postfix")
    server = None
    try:
        pf = next(postfix)
        dns = DnsmasqServer(ZONES, workdir=work / "dns", log_queries=True).start()
        cfg = write_test_config(work / "otpguard.toml", socket_spec=sock,
                                changes={**CONFIG, "port = 53": f"port = {dns.port}"})
        port = free_port()
        # MAIL_CONFIG points the quarantine gauge's postqueue at this private instance.
        server = OtpguardServer(config=cfg, socket=sock, log=work / "otpguard.log",
                                command=(OTPGUARD, "serve", "--metrics", f"127.0.0.1:{port}"),
                                env={"MAIL_CONFIG": str(pf.confdir)}).start()
        yield Stack(work=work, pf=pf, server=server, config=cfg, dns=dns,
                    metrics_url=f"http://127.0.0.1:{port}/metrics", metrics_port=port)
    finally:
        if server is not None:
            server.stop()
        postfix.close()
        if dns is not None:
            dns.close()
        shutil.rmtree(work, ignore_errors=True)


# --- helpers ---------------------------------------------------------------------------------

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> tuple[str, Samples]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"no sample {name}{labels}"
    return samples[key]


def series(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def total(samples: Samples, name: str, **match: str) -> float:
    return sum(v for labels, v in series(samples, name).items()
               if all(dict(labels).get(k) == want for k, want in match.items()))


def queue_id_of(reply: bytes) -> str:
    m = re.search(rb"queued as ([0-9A-Za-z]+)", reply)
    assert m, reply
    return m.group(1).decode()


def header_section(raw: bytes) -> str:
    return raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("utf-8", "surrogateescape")


def fields(raw: bytes) -> list[tuple[str, str]]:
    out: list[list[str]] = []
    for line in header_section(raw).split("\n"):
        if line[:1] in (" ", "\t") and out:
            out[-1][1] += " " + line.strip()
        else:
            name, _, v = line.partition(":")
            out.append([name, v.strip()])
    return [(n, v) for n, v in out]


def header(raw: bytes, name: str) -> list[str]:
    return [v for n, v in fields(raw) if n.lower() == name.lower()]


REASON = re.compile(r"\[(?:\\.|[^\]\\])*\]")


def symbols_of(value: str) -> set[str]:
    """Symbol names in an X-OTPGuard-Symbols value (reasons in [...] removed first)."""
    return set(re.findall(r"(?:^|; )([A-Z][A-Z0-9_]*)\(", REASON.sub("", value)))




@dataclass
class Outcome:
    """Where Postfix put a message and what our headers on it say."""

    name: str
    held: bool
    verdict: str       # clean | suspicious | phish | genuine
    symbols: set[str]
    dmarc: str | None  # our own or the trusted upstream DMARC result, when auth ran
    subject: str


def settle(pf: PostfixInstance, sent: dict[str, str], timeout: float = 60) -> dict[str, Outcome]:
    """Wait until every queue id is delivered or held; read the outcome of each."""
    state: list = [{}, set()]

    def done() -> bool:
        state[0] = delivered_by_queue_id(pf)
        state[1] = {q["queue_id"] for q in pf.held()}
        return set(sent) <= set(state[0]) | state[1]

    pf.wait_for(done, timeout, f"{len(sent)} messages delivered or held")
    delivered, held = state
    out = {}
    for qid, name in sent.items():
        raw = delivered[qid] if qid in delivered else pf.postcat(qid)
        verdict = header(raw, "X-OTPGuard-Verdict")
        assert len(verdict) == 1, (name, verdict)
        level = verdict[0].split(";")[0]
        if "genuine=yes" in verdict[0]:
            level = "genuine"
        symbols = header(raw, "X-OTPGuard-Symbols")
        assert len(symbols) == 1, (name, symbols)
        dmarc = None
        for ar in header(raw, "Authentication-Results"):
            authserv = ar.split(";")[0].strip().lower()
            if authserv in ("otpguard", TRUSTED_ID):
                m = re.search(r"\bdmarc=([a-z]+)", ar)
                dmarc = m.group(1) if m else "none"
        out[qid] = Outcome(name=name, held=qid in held, verdict=level, symbols=symbols_of(symbols[0]),
                           dmarc=dmarc, subject=(header(raw, "Subject") or [""])[0])
    return out



FORGED = (b"X-OTPGuard-Verdict: clean; score=0; genuine=yes\r\n"
          b"Authentication-Results: otpguard; dmarc=pass header.from=amazon.co.jp\r\n"
          b"From: Someone <someone@forger.example>\r\nTo: user@test.example\r\nSubject: hello\r\n"
          b"Message-ID: <forged-headers@forger.example>\r\n"
          b"X-OTPGuard-Symbols: AUTH_GENUINE(0) [trust me]\r\n\r\nmarker-forged\r\n")


def traffic() -> list[tuple[str, bytes, str]]:
    """(name, raw, envelope sender) of the mail sent through Postfix."""
    root = corpus()
    out = []
    for p in sorted((root / "phish").glob("*.eml"))[:12]:
        out.append((f"phish/{p.name}", p.read_bytes(), "sender@sender.example"))
    for p in sorted((root / "legit").glob("*.eml"))[:4]:
        out.append((f"legit/{p.name}", p.read_bytes(), "sender@sender.example"))
    for p in sorted((root / "traffic" / "easy_ham").iterdir())[:8]:
        out.append((f"ham/{p.name[:5]}", strip_mbox_from(p.read_bytes()), "list@lists.example"))
    out.append(("forged", FORGED, "someone@forger.example"))
    out.append(("genuine", genuine_code_mail("<metrics-genuine@amazon.co.jp>"), "bounce@bounces.amazon.co.jp"))
    return out


def send_all(pf: PostfixInstance, mails: list[tuple[str, bytes, str]]) -> dict[str, str]:
    def one(item: tuple[str, bytes, str]) -> tuple[str, str]:
        name, raw, sender = item
        code, reply = pf.send(raw, listener="unix", mail_from=sender)
        assert code == 250, (name, code, reply)
        return queue_id_of(reply), name

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return dict(pool.map(one, mails))


def addresses_and_domains(mails: list[tuple[str, bytes, str]]) -> set[str]:
    """Every sender/recipient address and domain of the traffic (none may appear in /metrics)."""
    out = {"user@test.example", "test.example", "mx.test.example", TRUSTED_ID}
    for _, raw, sender in mails:
        out |= {sender, sender.split("@")[1]}
        head = header_section(strip_mbox_from(raw))
        for line in re.findall(r"(?im)^(?:From|Reply-To|Sender):.*$", head):
            for _, addr in email.utils.getaddresses([line.split(":", 1)[1]]):
                if "@" in addr and addr.isascii():
                    out |= {addr.lower(), addr.split("@")[1].lower()}
    return {x for x in out if x}


def wait(predicate, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def reload(server: OtpguardServer, event: str) -> None:
    n = len(server.events(event))
    server.signal(signal.SIGHUP)
    wait(lambda: len(server.events(event)) > n, event)


# --- tests -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def after_traffic(stack: Stack) -> tuple[list, dict[str, Outcome], str, Samples]:
    """Send the traffic once; the outcomes and one scrape taken after it settled."""
    pf = stack.pf
    pf.delete_all()
    pf.clear_mailbox()
    mails = traffic()
    sent = send_all(pf, mails)
    outcomes = settle(pf, sent)
    # The milter logs each message after answering Postfix; wait until all lines are there.
    wait(lambda: len(stack.server.events("message")) >= len(mails), "one log line per message")
    text, samples = scrape(stack.metrics_url)
    return mails, outcomes, text, samples


@pytest.mark.integration
def test_message_counts_match_what_postfix_did(stack: Stack, after_traffic) -> None:
    mails, outcomes, text, samples = after_traffic
    by_name = {o.name: o for o in outcomes.values()}
    # Sanity of the traffic itself: phish held, ordinary mail clean, the genuine code genuine.
    phish = [o for o in outcomes.values() if o.verdict == "phish"]
    assert all(o.held for o in phish) and all(not o.held for o in outcomes.values() if o.verdict != "phish")
    assert sum(1 for o in outcomes.values() if o.name.startswith("phish/") and o.held) >= 8
    assert all(o.verdict == "clean" for n, o in by_name.items() if n.startswith("ham/"))
    assert by_name["genuine"].verdict == "genuine" and by_name["genuine"].dmarc == "pass"
    assert by_name["forged"].verdict == "clean" and "AUTH_GENUINE" not in by_name["forged"].symbols

    expected = collections.Counter((o.verdict, "quarantine" if o.held else "tag") for o in outcomes.values())
    print(f"\n{len(mails)} messages through Postfix: {dict(sorted(expected.items()))}")
    got = {(dict(k)["verdict"], dict(k)["action"]): v for k, v in series(samples, "otpguard_messages_total").items()}
    for key, v in got.items():
        assert v == expected.get(key, 0), (key, v, expected.get(key, 0))
    assert sum(got.values()) == len(mails)
    assert value(samples, "otpguard_messages_total", verdict="phish", action="quarantine") == len(phish) > 0
    assert value(samples, "otpguard_messages_total", verdict="clean", action="tag") >= 9  # ham + forged

    # Actions applied: every message was tagged; phish also held; suspicious also got a subject.
    assert value(samples, "otpguard_actions_total", action="tag") == len(mails)
    assert value(samples, "otpguard_actions_total", action="quarantine") == len(phish)
    assert value(samples, "otpguard_actions_total", action="subject") == \
        sum(1 for o in outcomes.values() if o.verdict == "suspicious")
    assert value(samples, "otpguard_actions_total", action="reject") == 0

    # The hold queue of this Postfix, read by the milter through postqueue.
    assert value(samples, "otpguard_quarantine_messages") == len(stack.pf.held()) == len(phish)


@pytest.mark.integration
def test_symbol_counts_match_the_headers(after_traffic) -> None:
    mails, outcomes, text, samples = after_traffic
    fired = collections.Counter(s for o in outcomes.values() for s in o.symbols)
    assert fired["IMPERSONATION"] >= 5, fired
    assert value(samples, "otpguard_symbols_total", symbol="IMPERSONATION") == fired["IMPERSONATION"]
    assert value(samples, "otpguard_symbols_total", symbol="AUTH_GENUINE") == 1
    counted = {dict(k)["symbol"]: v for k, v in series(samples, "otpguard_symbols_total").items()}
    for symbol, n in fired.items():
        assert counted.get(symbol) == n, (symbol, counted.get(symbol), n)
    for symbol, v in counted.items():
        assert v == fired.get(symbol, 0), (symbol, v)


@pytest.mark.integration
def test_auth_latency_in_flight_and_build_info(after_traffic) -> None:
    mails, outcomes, text, samples = after_traffic
    dmarc = collections.Counter(o.dmarc for o in outcomes.values() if o.dmarc is not None)
    assert dmarc["pass"] == 1 and sum(dmarc.values()) > 1, dmarc
    counted = {dict(k)["result"]: v for k, v in series(samples, "otpguard_auth_total").items()
               if dict(k)["method"] == "dmarc"}
    for result, v in counted.items():
        assert v == dmarc.get(result, 0), (result, v, dmarc)
    # Spoofed amazon.co.jp mail fails its DMARC reject policy, checked against dnsmasq.
    assert counted["fail"] >= 1
    for method in ("spf", "dkim", "arc"):
        assert total(samples, "otpguard_auth_total", method=method) == sum(dmarc.values()), method

    n = len(mails)
    assert value(samples, "otpguard_analysis_seconds_count") == n
    assert 0 < value(samples, "otpguard_analysis_seconds_sum") < 10 * n
    buckets = sorted(((float(dict(k)["le"]), v) for k, v in series(samples, "otpguard_analysis_seconds_bucket").items()))
    assert buckets[-1] == (math.inf, n)
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))
    assert value(samples, "otpguard_messages_in_flight") == 0
    assert value(samples, "otpguard_build_info", version=__version__) == 1
    assert value(samples, "otpguard_workers") == 2
    assert total(samples, "otpguard_worker_restarts_total") == 0
    assert value(samples, "otpguard_worker_cpu_seconds_total") > 0
    assert all(v == 0 for v in series(samples, "otpguard_errors_total").values()), series(samples, "otpguard_errors_total")
    assert value(samples, "otpguard_config_last_reload_successful") == 1


@pytest.mark.integration
def test_dns_latency_histogram_counts_real_queries(stack: Stack, after_traffic) -> None:
    """Brand mail was verified against dnsmasq: the DNS histogram saw those queries."""
    mails, outcomes, text, samples = after_traffic
    queries = (stack.dns.workdir / "queries.log").read_text(errors="replace").count(" query[")
    assert queries > 0, "the milter sent no DNS query at all"
    observed = total(samples, "otpguard_dns_query_seconds_count")
    assert observed > 0, f"dnsmasq answered {queries} queries, otpguard_dns_query_seconds saw none"
    assert observed <= queries
    assert total(samples, "otpguard_dns_query_seconds_count", outcome="ok") > 0  # amazon.co.jp TXT
    assert total(samples, "otpguard_dns_query_seconds_count", outcome="nxdomain") > 0


@pytest.mark.integration
def test_no_label_carries_an_address_or_domain(after_traffic) -> None:
    mails, outcomes, text, samples = after_traffic
    domain_like = re.compile(r"(?i)^(?=.*[a-z])[a-z0-9-]+(\.[a-z0-9-]+)+$")
    for (name, labels), _ in samples.items():
        for label, v in labels:
            assert "@" not in v and not domain_like.match(v), (name, label, v)
    lowered = text.lower()
    leaked = sorted(x for x in addresses_and_domains(mails) if x in lowered)
    assert not leaked, leaked


@pytest.mark.integration
def test_every_metric_of_the_rules_and_dashboard_is_served(after_traffic) -> None:
    """Names (and label values they select on) used by alerts and dashboard exist in the live scrape."""
    mails, outcomes, text, samples = after_traffic
    served = {name for name, _ in samples}
    values_by_name: dict[str, dict[str, set[str]]] = collections.defaultdict(lambda: collections.defaultdict(set))
    for name, labels in samples:
        for k, v in labels:
            values_by_name[name][k].add(v)
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"]
    for path in (RULES, DASHBOARD):
        source = path.read_text()
        used = set(re.findall(r"\botpguard_[a-z_]+", source))
        assert used, path
        missing = sorted(used - served)
        assert not missing, f"{path.name} uses metrics the running milter does not serve: {missing}"
        # Exact-match selectors such as {verdict="phish"} or {stage="state"} must select something.
        for name, selector in re.findall(r"\b(otpguard_[a-z_]+)\{([^}]*)\}", source.replace('\\"', '"')):
            for label, op, want in re.findall(r'(\w+)\s*(=~|!=|=)\s*"([^"]*)"', selector):
                if label == "instance" or op != "=":
                    continue
                assert want in values_by_name[name][label], f"{path.name}: {name}{{{label}=\"{want}\"}} selects nothing"


@pytest.mark.integration
def test_metrics_only_on_the_configured_address(stack: Stack, after_traffic) -> None:
    port = stack.metrics_port
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    others = {"127.0.0.2"}
    try:
        res = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10)
        others |= {a for a in res.stdout.split() if "." in a and not a.startswith("127.")}
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        others |= {ai[4][0] for ai in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
                   if not ai[4][0].startswith("127.")}
    except OSError:
        pass
    for address in others:
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=2).close()


@pytest.mark.integration
def test_config_reload_counters(stack: Stack, after_traffic) -> None:
    """SIGHUP with a good file counts a success; a bad file counts a failure and keeps the old config."""
    server, pf, path = stack.server, stack.pf, stack.config
    _, before = scrape(stack.metrics_url)
    ok0 = value(before, "otpguard_config_reloads_total", result="success")
    bad0 = value(before, "otpguard_config_reloads_total", result="failure")
    ts0 = value(before, "otpguard_config_last_reload_success_timestamp_seconds")
    original = path.read_text()
    good = original.replace("clean = [\"tag\"]", "clean = [\"tag\", \"subject\"]", 1).replace(
        "[actions.subject_prefix]", f'[actions.subject_prefix]\nclean = "{RELOADED_PREFIX}"', 1)
    assert good != original
    try:
        time.sleep(0.01)
        path.write_text(good)
        reload(server, "reload")
        _, s = scrape(stack.metrics_url)
        assert value(s, "otpguard_config_reloads_total", result="success") == ok0 + 1
        assert value(s, "otpguard_config_reloads_total", result="failure") == bad0
        assert value(s, "otpguard_config_last_reload_successful") == 1
        ts1 = value(s, "otpguard_config_last_reload_success_timestamp_seconds")
        assert ts1 > ts0 and abs(ts1 - time.time()) < 60

        path.write_text(good + "\n[nonsense]\nkey = 1\n")
        reload(server, "reload_failed")
        _, s = scrape(stack.metrics_url)
        assert value(s, "otpguard_config_reloads_total", result="success") == ok0 + 1
        assert value(s, "otpguard_config_reloads_total", result="failure") == bad0 + 1
        assert value(s, "otpguard_config_last_reload_successful") == 0
        assert value(s, "otpguard_config_last_reload_success_timestamp_seconds") == ts1
        assert server.proc is not None and server.proc.poll() is None

        # The last good config (with the clean subject prefix) still runs.
        pf.clear_mailbox()
        msg = (b"From: Bob <bob@example.net>\r\nTo: user@test.example\r\nSubject: lunch\r\n"
               b"Message-ID: <reload-kept@example.net>\r\n\r\nmarker-reload-kept\r\n")
        assert pf.send(msg, listener="unix", mail_from="bob@example.net")[0] == 250
        got = pf.wait_delivered(b"marker-reload-kept").raw
        assert header(got, "Subject") == [f"{RELOADED_PREFIX} lunch"]
    finally:
        path.write_text(original)
        reload(server, "reload")
    _, s = scrape(stack.metrics_url)
    assert value(s, "otpguard_config_reloads_total", result="success") == ok0 + 2
    assert value(s, "otpguard_config_last_reload_successful") == 1
