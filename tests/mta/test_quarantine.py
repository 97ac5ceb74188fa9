"""`otpguard quarantine` against a real private Postfix hold queue.

Messages are put on hold by Postfix itself (an end-of-data access rule that answers HOLD), with
the X-OTPGuard-* headers otpguard would have added, so these tests need no milter.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from otpguard.mta import quarantine
from support.postfix import PostfixInstance, header, postfix_instance_factory

pytestmark = pytest.mark.integration
OTPGUARD = str(Path(sys.executable).parent / "otpguard")
ROOT = Path(__file__).resolve().parents[2]

HELD = (b"From: \"Amazon.co.jp\" <account@amaz0n-jp.example>\r\n"
        b"To: user@test.example\r\n"
        b"Subject: =?UTF-8?B?44CQ6YeN6KaB44CR44Ki44Kr44Km44Oz44OI56K66KqN?= \x1b[31mred\r\n"
        b"X-OTPGuard-Verdict: phish; score=12.5\r\n"
        b"X-OTPGuard-Symbols: LOOKALIKE_FROM_DOMAIN(6) [lookalike: amaz0n-jp.example ~ amazon.co.jp];\r\n"
        b" OTP_LURE(6.5) [subject: code \\[1\\]; again]\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n"
        b"\r\n"
        b"<p>Your account is locked.</p><p><a href=\"https://signin.amaz0n-jp.example/ap\">Sign in</a>"
        b" or <a href=\"https://www.amazon.co.jp/gp/help\">help</a></p><p>marker-%s</p>\r\n")
SUSPICIOUS = (b"From: Newsletter <news@shop.example>\r\n"
              b"To: other@test.example\r\n"
              b"Subject: deals\r\n"
              b"X-OTPGuard-Verdict: suspicious; score=6\r\n"
              b"X-OTPGuard-Symbols: OTP_LURE(6) [body: code]\r\n"
              b"\r\n"
              b"marker-%s\r\n")


@pytest.fixture(scope="module")
def pf() -> Iterator[PostfixInstance]:
    """A private Postfix whose "hold" listener puts every message on hold."""
    main_cf = {"smtpd_end_of_data_restrictions": "check_client_access static:HOLD"}
    yield from postfix_instance_factory({"hold": "", "plain": ""}, main_cf=main_cf)


@pytest.fixture()
def conf(tmp_path: Path) -> Path:
    """The shipped config with the audit log in a file and the default released verdict."""
    text = (ROOT / "conf" / "otpguard.toml").read_text()
    text = text.replace('brands = ["brands/amazon.toml"]', f'brands = ["{ROOT}/conf/brands/amazon.toml"]')
    text = text.replace('audit_log = "syslog"', f'audit_log = "{tmp_path}/audit.log"')
    (tmp_path / "otpguard.toml").write_text(text)
    return tmp_path / "otpguard.toml"


def args(pf: PostfixInstance, *argv: str, conf: Path | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    quarantine.add_arguments(parser)
    extra = ["--config", str(conf)] if conf else []
    return parser.parse_args([*argv, "--postfix-config", str(pf.confdir), *extra])


def hold(pf: PostfixInstance, name: str, template: bytes = HELD, **send) -> str:
    code, reply = pf.send(template % name.encode(), listener="hold", **send)
    assert code == 250, reply
    qid = reply.decode().rsplit(" ", 1)[-1]
    pf.wait_for(lambda: any(m["queue_id"] == qid for m in pf.held()), what=f"{qid} on hold")
    return qid


def audit(conf: Path) -> list[str]:
    path = conf.parent / "audit.log"
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture(autouse=True)
def empty(pf: PostfixInstance) -> None:
    pf.delete_all()
    pf.clear_mailbox()


def test_list_shows_verdict_and_symbols(pf: PostfixInstance, capsys) -> None:
    qid = hold(pf, "list")
    assert quarantine.run(args(pf, "list")) == 0
    out = capsys.readouterr().out
    assert f"{qid}  " in out and "  phish 12.5" in out
    assert "Symbols: LOOKALIKE_FROM_DOMAIN, OTP_LURE" in out
    assert "Subject: 【重要】アカウント確認 \\x1b[31mred" in out  # terminal escapes shown, not sent
    assert "\x1b" not in out
    assert "1 held message(s)" in out


def test_list_json_golden(pf: PostfixInstance, capsys) -> None:
    """Structured fields: verdict and score apart, symbols as {name, score, reason}, from/to."""
    qid = hold(pf, "json")
    assert quarantine.run(args(pf, "list", "--json")) == 0
    (line,) = capsys.readouterr().out.splitlines()
    item = json.loads(line)
    arrival = item.pop("arrival_time")
    assert abs(arrival - time.time()) < 600
    assert item.pop("size") > 400
    assert item == {
        "queue_id": qid, "verdict": "phish", "score": 12.5,
        "symbols": [
            {"name": "LOOKALIKE_FROM_DOMAIN", "score": 6.0, "reason": "lookalike: amaz0n-jp.example ~ amazon.co.jp"},
            {"name": "OTP_LURE", "score": 6.5, "reason": "subject: code [1]; again"},
        ],
        "from": '"Amazon.co.jp" <account@amaz0n-jp.example>',
        "sender": "sender@sender.example", "to": ["user@test.example"],
        "subject": "【重要】アカウント確認 \x1b[31mred",
        "arrival": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(arrival)),
        "verdict_header": "phish; score=12.5", "burst": None, "error": None,
    }
    assert quarantine.held_count(str(pf.confdir)) == 1


def test_filters(pf: PostfixInstance, capsys) -> None:
    phish = hold(pf, "f1")
    susp = hold(pf, "f2", SUSPICIOUS, mail_from="bulk@lists.example", rcpts=("other@test.example",))

    def listed(*argv: str) -> list[str]:
        assert quarantine.run(args(pf, "list", "--json", *argv)) == 0
        return [json.loads(x)["queue_id"] for x in capsys.readouterr().out.splitlines()]

    assert listed() == [phish, susp]
    assert listed("--verdict", "phish") == [phish]
    assert listed("--verdict", "suspicious", "--verdict", "phish") == [phish, susp]
    assert listed("--sender", "lists.example") == [susp]
    assert listed("--sender", "*@amaz0n-jp.example") == [phish]  # the From header counts too
    assert listed("--recipient", "user@") == [phish]
    assert listed("--recipient", "*@test.example") == [phish, susp]
    assert listed("--older-than", "1h") == []
    time.sleep(1.1)
    assert listed("--older-than", "1s") == [phish, susp]


def test_show_has_reasons_links_and_body(pf: PostfixInstance, capsys, conf: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    qid = hold(pf, "show")
    assert quarantine.run(args(pf, "show", qid, conf=conf)) == 0
    out = capsys.readouterr().out
    assert "Reasons:" in out and "    OTP_LURE" in out and "      subject: code [1]; again" in out
    assert 'From: "Amazon.co.jp" <account@amaz0n-jp.example>' in out
    assert "lookalike    amaz0n-jp.example" in out and "https://signin.amaz0n-jp.example/ap" in out
    assert "brand        amazon.co.jp" in out
    assert "| Your account is locked." in out and "| marker-show" in out


def test_show_json(pf: PostfixInstance, capsys, conf: Path) -> None:
    qid = hold(pf, "showjson")
    assert quarantine.run(args(pf, "show", "--json", qid, conf=conf)) == 0
    item = json.loads(capsys.readouterr().out)
    assert item["verdict"] == "phish" and item["queue_id"] == qid
    assert {"href": "https://signin.amaz0n-jp.example/ap", "host": "signin.amaz0n-jp.example",
            "registered_domain": "amaz0n-jp.example", "category": "lookalike"} in item["links"]
    assert "marker-showjson" in item["body_lines"]


def test_release_resubmits_with_released_verdict_and_audits(pf: PostfixInstance, capsys, conf: Path) -> None:
    qid = hold(pf, "release")
    assert quarantine.run(args(pf, "release", qid, conf=conf)) == 0
    assert f"{qid}: resubmitted with X-OTPGuard-Verdict: released" in capsys.readouterr().out
    delivered = pf.wait_delivered(b"marker-release")
    assert header(delivered.raw, "X-OTPGuard-Verdict") == ["released; was=phish; score=12.5"]
    assert header(delivered.raw, "Return-Path") == ["<sender@sender.example>"]  # same envelope
    assert b"OTP_LURE(6.5)" in delivered.raw  # the reasons stay for the reader
    assert pf.held() == []
    (line,) = audit(conf)
    assert f"event=quarantine_release queue_id={qid} user=root" in line
    assert "verdict=phish score=12.5" in line and "sender=sender@sender.example" in line


def test_released_verdict_is_configurable(pf: PostfixInstance, capsys, conf: Path) -> None:
    conf.write_text(conf.read_text().replace('released_verdict = "released"', 'released_verdict = "let-through"'))
    hold(pf, "word")
    assert quarantine.run(args(pf, "release", "--all", conf=conf)) == 0
    delivered = pf.wait_delivered(b"marker-word")
    assert header(delivered.raw, "X-OTPGuard-Verdict") == ["let-through; was=phish; score=12.5"]


def test_release_in_place_when_otpguard_also_scans_local_mail(pf: PostfixInstance, capsys, conf: Path) -> None:
    """A resubmitted copy would go through non_smtpd_milters and be held again: release in place."""
    qid = hold(pf, "inplace")
    pf.postfix("reload")
    subprocess.run(["postconf", "-c", str(pf.confdir), "-e", "non_smtpd_milters=unix:/nonexistent/otpguard.sock"],
                   check=True, timeout=30)
    try:
        assert quarantine.run(args(pf, "release", qid, conf=conf)) == 0
        assert "released in place, header unchanged" in capsys.readouterr().out
        delivered = pf.wait_delivered(b"marker-inplace")
    finally:
        subprocess.run(["postconf", "-c", str(pf.confdir), "-e", "non_smtpd_milters="], check=True, timeout=30)
    assert header(delivered.raw, "X-OTPGuard-Verdict") == ["phish; score=12.5"]
    assert "outcome=\"released in place" in audit(conf)[0]


def test_bulk_delete_over_a_filter_audits_each(pf: PostfixInstance, capsys, conf: Path) -> None:
    a, b = hold(pf, "d1"), hold(pf, "d2")
    keep = hold(pf, "d3", SUSPICIOUS)
    assert quarantine.run(args(pf, "delete", "--verdict", "phish", "--dry-run", conf=conf)) == 0
    assert "2 message(s) would be deleted" in capsys.readouterr().out and len(pf.held()) == 3
    assert audit(conf) == []
    assert quarantine.run(args(pf, "delete", "--verdict", "phish", conf=conf)) == 0
    assert "2 message(s) deleted" in capsys.readouterr().out
    assert [m["queue_id"] for m in pf.held()] == [keep]
    lines = audit(conf)
    assert [ln.split("queue_id=")[1].split()[0] for ln in lines] == [a, b]
    assert all("event=quarantine_delete" in ln and "outcome=deleted" in ln for ln in lines)


def test_bulk_needs_ids_a_filter_or_all(pf: PostfixInstance, capsys, conf: Path) -> None:
    hold(pf, "guard")
    assert quarantine.run(args(pf, "delete", conf=conf)) == 1
    assert "give queue IDs, a filter" in capsys.readouterr().err
    assert len(pf.held()) == 1


def test_refuses_bad_ids_and_messages_not_held(pf: PostfixInstance, capsys, conf: Path) -> None:
    assert quarantine.run(args(pf, "release", "-d ALL", conf=conf)) == 1
    assert "not a Postfix queue id" in capsys.readouterr().err
    assert quarantine.run(args(pf, "delete", "ABCDEF12345", conf=conf)) == 1
    assert "not in the queue" in capsys.readouterr().err


def test_permission_denied_is_reported_not_shown_as_no_verdict(pf: PostfixInstance, capsys, monkeypatch) -> None:
    """As a normal user, postqueue works (setgid postdrop) but the queue files are Postfix's:
    the listing fails with a permission error instead of "no otpguard verdict" for everything.
    postcat runs as nobody here (postqueue stays root's: a set-gid Postfix tool run by a user
    accepts -c only for directories listed in /etc/postfix's alternate_config_directories)."""
    hold(pf, "perm")
    real = quarantine._cmd

    def as_nobody(tool: str, cfg: str | None, *a: str) -> list[str]:
        argv = real(tool, cfg, *a)
        return ["runuser", "-u", "nobody", "--", *argv] if tool == "postcat" else argv

    monkeypatch.setattr(quarantine, "_cmd", as_nobody)
    assert quarantine.run(args(pf, "list")) == 1
    captured = capsys.readouterr()
    assert "permission denied" in captured.err.lower() and "run as root" in captured.err
    assert "no otpguard verdict" not in captured.out


def test_command_line(pf: PostfixInstance, conf: Path) -> None:
    """Through the installed `otpguard` entry point, option after the subcommand."""
    qid = hold(pf, "cli")
    res = subprocess.run([OTPGUARD, "quarantine", "list", "--postfix-config", str(pf.confdir)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert qid in res.stdout and "phish 12.5" in res.stdout
    res = subprocess.run([OTPGUARD, "quarantine", "--postfix-config", str(pf.confdir), "--config", str(conf),
                          "release", qid], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    pf.wait_delivered(b"marker-cli")
