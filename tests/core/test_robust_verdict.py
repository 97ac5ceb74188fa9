"""Robustness that can fail: real mail parses without a swallowed failure, a swallowed failure is
never silent, pathological shapes finish within a wall-clock bound, and adversarial rewrites of
a lure (homoglyphs, lookalike domains, padding, forged signatures, split words) stay phish.

"Never raises" alone proves little (parsing and the check runner catch everything): these
tests look at what was caught.
"""
from __future__ import annotations

import io
import json
import random
import time
from dataclasses import replace

import pytest

from conftest import FIXTURES, mail, need_corpus
from otpguard.core.model import Decision, Envelope, Level
from otpguard.core.parse import parse_message
from otpguard.engine import Engine
from otpguard.ops import logs
from support.corpus import manifest

pytestmark = pytest.mark.verdict

# Generous but real: the shipped time budget is 10 s per message; these shapes must stay far below.
BOUND_SECONDS = 3.0


# Fixtures malformed on purpose (a boundary parameter the stdlib raises on): they test the fallback.
MALFORMED_ON_PURPOSE = {"mangled_boundary_parameter.eml"}


def _mail_shaped() -> list:
    corpus = need_corpus()
    files = [corpus / f for f, _ in manifest(corpus)]
    files += sorted(p for p in FIXTURES.rglob("*.eml") if p.name not in MALFORMED_ON_PURPOSE)
    return files


def test_real_mail_parses_without_a_swallowed_failure(engine, config):
    for path in _mail_shaped():
        raw = path.read_bytes()
        msg = parse_message(raw, config.analysis)
        assert not [d for d in msg.defects if d.startswith(("unparsable", "internal", "walk:", "part:"))], path
        d = engine.analyse(raw, Envelope())
        assert d.internal_failures == (), (path, d.notes)


def test_a_check_that_raises_is_visible_in_the_decision_the_log_line_and_a_warning(config, monkeypatch):
    from otpguard.core.checks.links import LinkCheck

    def broken(self, ctx):
        raise RuntimeError("boom")
        yield  # pragma: no cover

    monkeypatch.setattr(LinkCheck, "run", broken)
    eng = Engine(replace(config, auth=replace(config.auth, verify=False)), verify=False)
    d = eng.analyse(mail("lookalike_sender_otp.eml"), Envelope())
    assert d.internal_failures and "links" in d.internal_failures[0] and "boom" in d.internal_failures[0]
    stream = io.StringIO()
    logs.setup("info", "json", stream=stream)
    logs.message(queue_id="Q1", decision=d, action="tag", ms=1.0)
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["level"] == "warning" and any("boom" in n for n in line["notes"])


def test_a_parse_that_fails_outright_is_visible(config, monkeypatch):
    from otpguard.core import parse

    monkeypatch.setattr(parse, "_parse_message", lambda raw, limits: 1 / 0)
    eng = Engine(replace(config, auth=replace(config.auth, verify=False)), verify=False)
    d = eng.analyse(b"From: a@b.example\r\n\r\nhello", Envelope())
    assert d.internal_failures and "ZeroDivisionError" in d.internal_failures[0]


def test_a_decision_without_failures_has_none():
    assert Decision(level=Level.CLEAN, score=0.0, notes=("analysed the first 10 bytes",)).internal_failures == ()


PATHOLOGICAL = {
    "10k header fields": b"From: a@b.example\r\n" + b"X-H: v\r\n" * 10000 + b"\r\nbody",
    "100k line": b"From: Amazon <a@b.example>\r\n\r\n" + b"A" * 100000 + b"\r\n",
    "20k brand links": b"From: Amazon <a@b.example>\r\nContent-Type: text/html\r\n\r\n"
                       + b"<a href='http://x.example/'>amazon</a>" * 20000,
    "1 MB base64": b"From: a@b.example\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                   + b"QUFB" * 300000,
    "deep nesting": b"From: Amazon <a@b.example>\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
                    + b"".join(f"--b{i}\r\nContent-Type: multipart/mixed; boundary=b{i + 1}\r\n\r\n".encode()
                               for i in range(200)) + b"verify your account\r\n",
    "lure words everywhere": b"From: Amazon <a@b.example>\r\nSubject: Amazon\r\n\r\n"
                             + "アカウント 停止 verify account suspended code 123456 ".encode() * 20000,
    "10k phone-like numbers": b"From: Amazon <a@b.example>\r\n\r\ncall " + b"+1 808 555 0147 " * 10000,
}


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_pathological_shapes_finish_within_a_bound(engine, name):
    started = time.monotonic()
    d = engine.analyse(PATHOLOGICAL[name], Envelope())
    assert time.monotonic() - started < BOUND_SECONDS, name
    assert d.internal_failures == (), d.notes


# --- adversarial generators: each rewrite keeps the lure a lure -----------------------------------

HOMOGLYPHS = {"a": "\u0430", "o": "\u043e", "e": "\u0435", "c": "\u0441", "p": "\u0440", "m": "\u217f"}


def _homoglyph(text: str, rng: random.Random) -> str:
    return "".join(HOMOGLYPHS[c] if c in HOMOGLYPHS and rng.random() < 0.5 else c for c in text)


def _lookalike_domain(rng: random.Random) -> str:
    forms = ["amaz0n", "arnazon", "amazom", "amazon-secure", "secure-amazon", "amazonn", "amzon", "amaazon"]
    return f"{rng.choice(forms)}-{rng.choice(['help', 'id', 'jp', 'account'])}.{rng.choice(['com', 'net', 'top', 'xyz'])}"


def _lure(rng: random.Random, *, display: str, domain: str, subject: str, body_words: str, pad: int = 0,
          forged_signature: bool = False) -> bytes:
    padding = "<div style='display:none'>" + ("newsletter digest " * pad) + "</div>" if pad else ""
    sig = ("DKIM-Signature: v=1; a=rsa-sha256; d=amazon.co.jp; s=s1; h=from:subject; bh=AAAA=; b=AAAA\r\n"
           if forged_signature else "")
    return (f"{sig}From: \"{display}\" <no-reply@{domain}>\r\nTo: victim@example.org\r\nSubject: {subject}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
            f"<html><body>{padding}<p>{body_words}</p>"
            f"<p><a href=\"https://{domain}/ap/signin\">Sign in</a></p></body></html>\r\n").encode()


@pytest.mark.parametrize("seed", range(12))
def test_adversarial_rewrites_of_a_lure_stay_phish(engine, seed):
    rng = random.Random(seed)
    words = "Your account has been locked after unusual sign-in activity. Verify your account to restore access."
    variants = {
        "homoglyph display": _lure(rng, display=_homoglyph("Amazon", rng), domain="notice-mailer.example",
                                   subject="Account notice", body_words=words),
        "lookalike domain": _lure(rng, display="Account Service", domain=_lookalike_domain(rng),
                                  subject="Account notice", body_words=words),
        "padded": _lure(rng, display="Amazon.co.jp", domain="notice-mailer.example", subject="Account notice",
                        body_words=words, pad=rng.randint(200, 2000)),
        "forged signature": _lure(rng, display="Amazon.co.jp", domain="amazon.co.jp", subject="Account notice",
                                  body_words=words, forged_signature=True).replace(
                                      b'href="https://amazon.co.jp/ap/signin"',
                                      b'href="https://verify-session.example/ap/signin"'),
        "split words": _lure(rng, display="Amazon", domain="notice-mailer.example", subject="Account notice",
                             body_words="\u200b".join(words)),
    }
    for name, raw in variants.items():
        d = engine.analyse(raw, Envelope(mail_from=f"bounce@{name.replace(' ', '-')}.example",
                                         client_ip="45.76.10.20", helo="mailer.example"))
        assert d.level is Level.PHISH, (seed, name, [(h.symbol, h.score) for h in d.hits])
