"""Hostile input never raises out of the core (property tests; longer runs: make fuzz)."""
from __future__ import annotations

import pytest

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import need_corpus
from otpguard.core.settings import AnalysisConfig
from otpguard.core.model import Envelope
from otpguard.core.parse import parse_message

pytestmark = pytest.mark.verdict

LIMITS = AnalysisConfig()
HEADERS = st.sampled_from([b"From: ", b"Subject: =?utf-8?b?", b"Content-Type: multipart/mixed; boundary=", b"Content-Type: text/html; charset=",
                           b"Content-Transfer-Encoding: base64", b"Reply-To: ", b"DKIM-Signature: d=", b"\r\n", b"--", b"=?iso-2022-jp?q?"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_parsing_never_raises_on_arbitrary_bytes(data):
    parse_message(data, LIMITS)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(HEADERS, st.binary(max_size=200)), max_size=40))
def test_analysis_never_raises_on_mail_shaped_garbage(engine, chunks):
    engine.analyse(b"".join(chunks), Envelope())


def test_mutated_corpus_mail_never_raises(engine):
    corpus = need_corpus()
    rng = random.Random(20261121)
    files = sorted((corpus / "phish").glob("*.eml")) + sorted((corpus / "legit").glob("*.eml"))
    for path in files:
        raw = bytearray(path.read_bytes())
        for _ in range(3):
            mutated = bytearray(raw)
            for _ in range(rng.randint(1, 40)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            cut = rng.randrange(len(mutated))
            engine.analyse(bytes(mutated[:cut] if rng.random() < 0.3 else mutated), Envelope())


def test_pathological_shapes_are_bounded(engine):
    shapes = [
        b"From: a@b.example\r\n" + b"X-H: v\r\n" * 10000 + b"\r\nbody",
        b"From: a@b.example\r\n\r\n" + b"A" * 100000 + b"\r\n",
        b"From: a@b.example\r\nContent-Type: text/html\r\n\r\n" + b"<a href='http://x.example/'>amazon</a>" * 20000,
        b"From: a@b.example\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b"QUFB" * 300000,
        b"From: \x00\x00 <\x00@\x00>\r\nSubject: \r\n\x00\r\n\r\n\x00\x00",
    ]
    for raw in shapes:
        engine.analyse(raw, Envelope())
