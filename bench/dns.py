"""Sender authentication throughput: verify() with a cold DNS cache versus a warm one.

Starts dnsmasq on loopback (tests/support/dnsserver.py), signs N Amazon-like messages the way
Amazon does (d=amazon.co.jp and d=amazonses.com), then times verify() on each message twice:
cold (cache cleared before every message: every lookup goes to dnsmasq) and warm (cache primed).

    .venv/bin/python bench/dns.py [--messages 200]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# This file is named dns.py: its folder on sys.path would shadow dnspython's `dns` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT / "tests"))
try:
    import otpguard  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT / "milter"))

from otpguard.auth.verify import verify  # noqa: E402
from otpguard.auth.settings import AuthConfig  # noqa: E402
from otpguard.auth.dnsio import DnsClient  # noqa: E402
from otpguard.core.model import Envelope  # noqa: E402
from support.dnsserver import DnsmasqServer, KeyRing, crlf, dkim_sign, dnsmasq_path  # noqa: E402

SES_IP = "192.0.2.20"


def zones(keys: KeyRing) -> dict[str, dict[str, list[str | tuple[int, str]]]]:
    return {
        "amazon.co.jp": {"TXT": ["v=spf1 include:amazonses.example mx -all"], "MX": [(10, "mx.amazon.co.jp")]},
        "mx.amazon.co.jp": {"A": ["192.0.2.10"]},
        "bounces.amazon.co.jp": {"TXT": ["v=spf1 include:amazonses.example -all"]},
        "amazonses.example": {"TXT": ["v=spf1 ip4:192.0.2.16/28 ip4:198.51.100.0/24 -all"]},
        "sel._domainkey.amazon.co.jp": {"TXT": [keys.key("amazon", bits=2048).txt()]},
        "ses._domainkey.amazonses.com": {"TXT": [keys.key("ses").txt()]},
        "_dmarc.amazon.co.jp": {"TXT": ["v=DMARC1; p=quarantine; sp=quarantine"]},
    }


def messages(keys: KeyRing, n: int) -> list[bytes]:
    out = []
    for i in range(n):
        body = (f"From: \"Amazon.co.jp\" <account-update@amazon.co.jp>\n"
                f"To: user{i}@example.org\n"
                f"Subject: Amazon.co.jp: your one-time password {i:06d}\n"
                f"Date: Tue, 14 May 2024 09:12:45 +0000\n"
                f"Message-ID: <bench-{i}@amazonses.example>\n"
                "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n"
                + f"Your code is {100000 + i}. Do not share it.\n" * 20)
        raw = dkim_sign(crlf(body.encode()), domain="amazon.co.jp", selector="sel", key=keys.key("amazon", bits=2048))
        out.append(dkim_sign(raw, domain="amazonses.com", selector="ses", key=keys.key("ses")))
    return out


def timed(client: DnsClient, raws: list[bytes], *, cold: bool) -> tuple[list[float], list[str]]:
    cfg = AuthConfig()
    env = Envelope(client_ip=SES_IP, helo="a1-2.smtp-out.amazonses.example", mail_from="b@bounces.amazon.co.jp")
    times, results = [], []
    for raw in raws:
        if cold:
            client.clear_cache()
        t0 = time.perf_counter()
        s = verify(raw, env, dns=client, cfg=cfg, budget_seconds=5.0)
        times.append(time.perf_counter() - t0)
        results.append(s.dmarc)
    return times, results


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(name: str, times: list[float], queries: int) -> float:
    rate = len(times) / sum(times)
    print(f"{name:5s} {rate:9.1f} msgs/s   p50 {pct(times, 0.50) * 1000:7.2f} ms   "
          f"p99 {pct(times, 0.99) * 1000:7.2f} ms   dns queries/msg {queries / len(times):5.2f}")
    return rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200)
    args = ap.parse_args()
    if dnsmasq_path() is None:
        print("dnsmasq not installed (Debian package dnsmasq-base): cannot run", file=sys.stderr)
        return 2
    keys = KeyRing()
    raws = messages(keys, args.messages)
    with DnsmasqServer(zones(keys)) as server:
        client = DnsClient(nameservers=("127.0.0.1",), port=server.port, query_timeout=2.0)
        timed(client, raws[:5], cold=True)  # import and first-use costs out of the figures
        q0 = client.stats().queries
        cold, cold_results = timed(client, raws, cold=True)
        q1 = client.stats().queries
        warm, warm_results = timed(client, raws, cold=False)
        q2 = client.stats().queries
    if set(cold_results) != {"pass"} or set(warm_results) != {"pass"}:
        print(f"unexpected DMARC results: cold {set(cold_results)} warm {set(warm_results)}", file=sys.stderr)
        return 1
    print(f"verify() on {len(raws)} messages, 2 DKIM signatures each (2048 + 1024 bit), SPF include+mx, DMARC")
    cold_rate = report("cold", cold, q1 - q0)
    warm_rate = report("warm", warm, q2 - q1)
    print(f"warm/cold throughput ratio {warm_rate / cold_rate:.2f}  "
          f"(median speed-up {statistics.median(cold) / statistics.median(warm):.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
