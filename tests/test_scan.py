"""`otpguard scan`: files, folders, mbox, Maildir; JSON schema; errors do not stop the scan."""
from __future__ import annotations

import json
import mailbox
import subprocess
import sys
from pathlib import Path

from conftest import FIXTURES


def scan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otpguard.cli", "scan", *args], capture_output=True, text=True,
                          timeout=120)


def test_json_lines_have_the_documented_fields():
    proc = scan("--json", str(FIXTURES / "mail"))
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0 and len(rows) == len(list((FIXTURES / "mail").glob("*.eml")))
    for row in rows:
        assert {"path", "verdict", "score", "genuine", "symbols", "error"} <= set(row)
        assert row["verdict"] in ("clean", "suspicious", "phish") and row["error"] is None
        for sym in row["symbols"]:
            assert set(sym) == {"name", "score", "reason"}
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["lookalike_sender_otp.eml"]["verdict"] == "phish"
    assert by_name["ordinary_newsletter.eml"]["verdict"] == "clean"


def test_mbox_and_maildir_are_read_message_by_message(tmp_path):
    box = mailbox.mbox(str(tmp_path / "inbox.mbox"))
    for name in ("lookalike_sender_otp.eml", "ordinary_newsletter.eml"):
        box.add((FIXTURES / "mail" / name).read_bytes())
    box.flush()
    md = mailbox.Maildir(str(tmp_path / "Maildir"), create=True)
    md.add((FIXTURES / "mail" / "link_text_mismatch.eml").read_bytes())
    rows = [json.loads(x) for x in scan("--json", str(tmp_path / "inbox.mbox"), str(tmp_path / "Maildir")).stdout.splitlines()]
    assert [r["verdict"] for r in rows] == ["phish", "clean", "phish"]
    assert rows[0]["path"].endswith("inbox.mbox#1")


def test_unreadable_input_is_an_error_entry_and_the_scan_goes_on(tmp_path):
    (tmp_path / "locked.eml").write_bytes(b"From: x@y.example\r\n\r\nhi")
    (tmp_path / "locked.eml").chmod(0)
    missing = tmp_path / "missing.eml"
    proc = scan("--json", str(missing), str(FIXTURES / "mail" / "lookalike_sender_otp.eml"))
    rows = [json.loads(x) for x in proc.stdout.splitlines()]
    assert rows[0]["error"] and rows[0]["verdict"] is None
    assert rows[1]["verdict"] == "phish"


def test_human_output_has_one_line_per_flagged_message_and_a_summary():
    proc = scan(str(FIXTURES / "mail"))
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].endswith(")") is False and "messages:" in lines[-1]
    assert any(line.startswith("phish") and "lookalike_sender_otp.eml" in line for line in lines)
    assert not any("ordinary_newsletter.eml" in line for line in lines)  # clean ones only with --all


def test_bad_config_exits_2_naming_the_key(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text(f'[general]\nbrands = ["{FIXTURES.parents[1] / "conf" / "brands" / "amazon.toml"}"]\n'
                   "[scoring]\nphish = -1\n")
    proc = scan("--config", str(bad), str(FIXTURES / "mail"))
    assert proc.returncode == 2 and "scoring.phish" in proc.stderr


def test_trusted_hops_for_saved_mail(tmp_path, corpus):
    """Mail saved from a Gmail mailbox carries Gmail's results below two Received fields of its own."""
    cfg = tmp_path / "otpguard.toml"
    shipped = (Path(__file__).resolve().parents[1] / "conf" / "otpguard.toml").read_text()
    cfg.write_text(shipped.replace('brands = ["brands/amazon.toml"]',
                                   f'brands = ["{Path(__file__).resolve().parents[1]}/conf/brands/amazon.toml"]')
                   .replace("trusted_authserv_ids = []", 'trusted_authserv_ids = ["mx.google.com"]'))
    saved = str(corpus / "legit" / "010.eml")
    row = json.loads(scan("--json", "--config", str(cfg), saved).stdout)
    assert not row["genuine"] and "FORGED_AUTH_RESULTS" in [s["name"] for s in row["symbols"]]
    row = json.loads(scan("--json", "--config", str(cfg), "--trusted-hops", "2", saved).stdout)
    assert row["genuine"] and row["auth"]["source"] == "upstream:mx.google.com"
    assert scan("--config", str(cfg), "--trusted-hops", "-1", saved).returncode == 2
