"""`otpguard quarantine` against a real private Postfix hold queue.

Messages are put on hold by Postfix itself (an end-of-data access rule that answers HOLD), with
the X-OTPGuard-* headers otpguard would have added, so these tests need no milter.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from otpguard.mta import quarantine
from support.postfix import PostfixInstance, postfix_instance_factory

pytestmark = pytest.mark.integration
OTPGUARD = str(Path(sys.executable).parent / "otpguard")

HELD = (b"From: \"Amazon.co.jp\" <account@amaz0n-jp.example>\r\n"
        b"To: user@test.example\r\n"
        b"Subject: =?UTF-8?B?44CQ6YeN6KaB44CR44Ki44Kr44Km44Oz44OI56K66KqN?= \x1b[31mred\r\n"
        b"X-OTPGuard-Verdict: phish; score=12.5\r\n"
        b"X-OTPGuard-Symbols: LOOKALIKE_FROM_DOMAIN(6) [lookalike: amaz0n-jp.example ~ amazon.co.jp];\r\n"
        b" OTP_LURE(6.5) [subject: code]\r\n"
        b"\r\n"
        b"marker-%s\r\n")


@pytest.fixture(scope="module")
def pf() -> Iterator[PostfixInstance]:
    """A private Postfix whose "hold" listener puts every message on hold."""
    main_cf = {"smtpd_end_of_data_restrictions": "check_client_access static:HOLD"}
    yield from postfix_instance_factory({"hold": "", "plain": ""}, main_cf=main_cf)


def args(pf: PostfixInstance, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    quarantine.add_arguments(parser)
    return parser.parse_args([*argv, "--postfix-config", str(pf.confdir)])


def hold(pf: PostfixInstance, name: str) -> str:
    code, reply = pf.send(HELD % name.encode(), listener="hold")
    assert code == 250, reply
    qid = reply.decode().rsplit(" ", 1)[-1]
    pf.wait_for(lambda: any(m["queue_id"] == qid for m in pf.held()), what=f"{qid} on hold")
    return qid


@pytest.fixture(autouse=True)
def empty(pf: PostfixInstance) -> None:
    pf.delete_all()
    pf.clear_mailbox()


def test_list_shows_verdict_and_reasons(pf: PostfixInstance, capsys) -> None:
    qid = hold(pf, "list")
    assert quarantine.run(args(pf, "list")) == 0
    out = capsys.readouterr().out
    assert f"{qid}  " in out
    assert "phish; score=12.5" in out
    assert "LOOKALIKE_FROM_DOMAIN(6) [lookalike: amaz0n-jp.example ~ amazon.co.jp]; OTP_LURE(6.5)" in out
    assert "Subject: 【重要】アカウント確認 \\x1b[31mred" in out  # terminal escapes shown, not sent
    assert "\x1b" not in out
    assert "1 held message(s)" in out


def test_list_json(pf: PostfixInstance, capsys) -> None:
    qid = hold(pf, "json")
    assert quarantine.run(args(pf, "list", "--json")) == 0
    (line,) = capsys.readouterr().out.splitlines()
    item = json.loads(line)
    assert item["queue_id"] == qid and item["verdict"] == "phish; score=12.5"
    assert item["recipients"] == ["user@test.example"] and item["sender"] == "sender@sender.example"
    assert quarantine.held_count(str(pf.confdir)) == 1


def test_show(pf: PostfixInstance, capsys) -> None:
    qid = hold(pf, "show")
    assert quarantine.run(args(pf, "show", qid)) == 0
    out = capsys.readouterr().out
    assert "phish; score=12.5" in out and "Reasons:" in out
    assert "    OTP_LURE(6.5) [subject: code]" in out
    assert 'From: "Amazon.co.jp" <account@amaz0n-jp.example>' in out


def test_release_delivers_to_the_mailbox(pf: PostfixInstance, capsys) -> None:
    qid = hold(pf, "release")
    assert quarantine.run(args(pf, "release", qid)) == 0
    assert f"{qid}: released" in capsys.readouterr().out
    delivered = pf.wait_delivered(b"marker-release")
    assert b"X-OTPGuard-Verdict: phish; score=12.5" in delivered.raw
    assert pf.held() == []


def test_delete(pf: PostfixInstance, capsys) -> None:
    qid = hold(pf, "delete")
    keep = hold(pf, "keep")
    assert quarantine.run(args(pf, "delete", qid)) == 0
    assert [m["queue_id"] for m in pf.held()] == [keep]


def test_refuses_bad_ids_and_messages_not_held(pf: PostfixInstance, capsys) -> None:
    assert quarantine.run(args(pf, "release", "-d ALL")) == 1
    assert "not a Postfix queue id" in capsys.readouterr().err
    assert quarantine.run(args(pf, "delete", "ABCDEF12345")) == 1
    assert "not in the queue" in capsys.readouterr().err


def test_command_line(pf: PostfixInstance) -> None:
    """Through the installed `otpguard` entry point, option after the subcommand."""
    qid = hold(pf, "cli")
    res = subprocess.run([OTPGUARD, "quarantine", "list", "--postfix-config", str(pf.confdir)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert qid in res.stdout and "phish; score=12.5" in res.stdout
    res = subprocess.run([OTPGUARD, "quarantine", "--postfix-config", str(pf.confdir), "release", qid],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    pf.wait_delivered(b"marker-cli")
