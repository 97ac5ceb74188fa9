"""The test token end to end: Postfix -> otpguard serve -> verdict -> quarantine -> release.

An admin proves the whole chain with one harmless message whose body holds OTPGUARD-TEST-PHISH
(like SpamAssassin's GTUBE). Only that exact token in the body triggers TEST_PHISH.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from support.postfix import (OTPGUARD, OtpguardServer, PostfixInstance, header, postfix_instance_factory,
                             shared_tmpdir, write_test_config)

pytestmark = pytest.mark.integration
MAIL = Path(__file__).resolve().parents[1] / "fixtures" / "mail"


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple[PostfixInstance, OtpguardServer, Path]]:
    work = shared_tmpdir("otpguard-token-")
    (work / "sock").mkdir(mode=0o755)
    sock = f"unix:{work}/sock/otpguard.sock"
    cfg = write_test_config(work / "otpguard.toml", socket_spec=sock,
                            changes={'format = "logfmt"': 'format = "json"',
                                     'audit_log = "syslog"': f'audit_log = "{work}/audit.log"'})
    server = OtpguardServer(config=cfg, socket=sock, log=work / "serve.log")
    postfix = postfix_instance_factory({"milter": sock}, root=work / "postfix")
    try:
        pf = next(postfix)
        server.start()
        yield pf, server, cfg
    finally:
        server.stop()
        postfix.close()
        shutil.rmtree(work, ignore_errors=True)


def test_token_message_is_held_as_phish_with_test_phish_and_released(stack) -> None:
    pf, server, cfg = stack
    pf.delete_all()
    code, reply = pf.send((MAIL / "test_token.eml").read_bytes(), listener="milter")
    assert code == 250, reply
    (held,) = pf.wait_held()
    qid = held["queue_id"]
    raw = pf.postcat(qid)
    assert header(raw, "X-OTPGuard-Verdict") == ["phish; score=100"]
    assert header(raw, "X-OTPGuard-Symbols")[0].startswith("TEST_PHISH(100) [test token OTPGUARD-TEST-PHISH")
    (logged,) = [e for e in server.events("message") if e.get("queue_id") == qid]
    assert logged["verdict"] == "phish" and "TEST_PHISH" in logged["symbols"]

    listing = subprocess.run([OTPGUARD, "quarantine", "list", "--json", "--verdict", "phish",
                              "--postfix-config", str(pf.confdir)], capture_output=True, text=True, timeout=60)
    (item,) = [json.loads(x) for x in listing.stdout.splitlines()]
    assert item["queue_id"] == qid and item["score"] == 100
    assert item["symbols"][0]["name"] == "TEST_PHISH"

    released = subprocess.run([OTPGUARD, "quarantine", "release", qid, "--postfix-config", str(pf.confdir),
                               "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert released.returncode == 0, released.stderr
    delivered = pf.wait_delivered(b"otpguard-test-token@sender.example")
    assert header(delivered.raw, "X-OTPGuard-Verdict") == ["released; was=phish; score=100"]
    assert f"queue_id={qid}" in (cfg.parent / "audit.log").read_text()


def test_token_quoted_in_the_subject_or_altered_is_not_phish(stack) -> None:
    pf, server, _ = stack
    pf.delete_all()
    pf.clear_mailbox()
    code, reply = pf.send((MAIL / "test_token_in_subject_only.eml").read_bytes(), listener="milter")
    assert code == 250, reply
    delivered = pf.wait_delivered(b"otpguard-test-token-subject@sender.example")
    assert pf.held() == []
    assert not header(delivered.raw, "X-OTPGuard-Verdict")  # clean mail is not tagged by default
