"""`otpguard scan`: files, folders, mbox by content, Maildir as on disk; spamc-style exit codes;
wrapped reasons; the summary; the JSON schema; errors do not stop the scan.

Golden outputs use the test token and a brand-free newsletter, so they do not move when
detection weights change; tests/golden/*.txt are rewritten with OTPGUARD_REGOLD=1.
"""
from __future__ import annotations

import json
import mailbox
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, SHIPPED_CONFIG

GOLDEN = Path(__file__).resolve().parent / "golden"
TOKEN = (FIXTURES / "mail" / "test_token.eml").read_bytes()
NEWSLETTER = (FIXTURES / "mail" / "ordinary_newsletter.eml").read_bytes()


def scan(*args: str, columns: int = 100, config: Path | None = SHIPPED_CONFIG) -> subprocess.CompletedProcess:
    cfg = ["--config", str(config)] if config else []
    return subprocess.run([sys.executable, "-m", "otpguard.cli", "scan", *cfg, *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": str(columns)})


def golden(name: str, text: str, tmp_path: Path) -> None:
    """text (with tmp_path written as $TMP) equals tests/golden/<name>."""
    text = text.replace(str(tmp_path), "$TMP")
    path = GOLDEN / name
    if os.environ.get("OTPGUARD_REGOLD") == "1":
        path.write_text(text)
    assert text == path.read_text()


def mbox_without_suffix(tmp_path: Path) -> Path:
    """A Thunderbird-style mbox: a file called Inbox, two messages."""
    box = mailbox.mbox(str(tmp_path / "Inbox"))
    box.add(TOKEN)
    box.add(NEWSLETTER)
    box.flush()
    return tmp_path / "Inbox"


def maildir(tmp_path: Path) -> Path:
    md = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (md / sub).mkdir(parents=True)
    (md / "new" / "1700000000.M1P1.mx").write_bytes(TOKEN)
    (md / "cur" / "1700000001.M2P1.mx:2,S").write_bytes(NEWSLETTER)
    (md / "tmp" / "1700000002.M3P1.mx").write_bytes(TOKEN)  # a delivery in progress: never read
    return md


def test_mbox_without_suffix_and_maildir_golden(tmp_path):
    proc = scan("--all", str(mbox_without_suffix(tmp_path)), str(maildir(tmp_path)))
    assert proc.returncode == 1, proc.stderr
    golden("scan_mbox_maildir.txt", proc.stdout, tmp_path)


def test_maildir_paths_are_the_files_on_disk(tmp_path):
    rows = [json.loads(x) for x in scan("--json", str(maildir(tmp_path))).stdout.splitlines()]
    assert [r["path"] for r in rows] == [str(tmp_path / "Maildir" / "new" / "1700000000.M1P1.mx"),
                                         str(tmp_path / "Maildir" / "cur" / "1700000001.M2P1.mx:2,S")]
    assert all(Path(r["path"]).is_file() for r in rows)
    assert [r["verdict"] for r in rows] == ["phish", "clean"]


def test_mbox_is_recognised_by_content_not_name(tmp_path):
    spool = tmp_path / "var-mail-alice"  # like /var/mail/alice
    spool.write_bytes(mbox_without_suffix(tmp_path).read_bytes())
    rows = [json.loads(x) for x in scan("--json", str(spool)).stdout.splitlines()]
    assert [(r["path"], r["verdict"]) for r in rows] == [(f"{spool}#1", "phish"), (f"{spool}#2", "clean")]
    # A message file that happens to be called something.mbox is still one message.
    eml = tmp_path / "one.mbox"
    eml.write_bytes(NEWSLETTER)
    rows = [json.loads(x) for x in scan("--json", str(eml)).stdout.splitlines()]
    assert [r["path"] for r in rows] == [str(eml)]


@pytest.mark.parametrize("files, status", [
    (["ordinary_newsletter.eml"], 0),
    (["ordinary_newsletter.eml", "test_token.eml"], 1),
    (["lookalike_sender_otp.eml"], 1),
])
def test_exit_status_clean_or_flagged(files, status):
    proc = scan("-q", *(str(FIXTURES / "mail" / f) for f in files))
    assert proc.returncode == status and proc.stdout == "" and proc.stderr == ""


def test_exit_status_1_for_suspicious_only(tmp_path):
    cfg = tmp_path / "otpguard.toml"
    text = SHIPPED_CONFIG.read_text().replace("TEST_PHISH = 100.0", "TEST_PHISH = 6.0")
    cfg.write_text(text.replace('brands = ["brands/amazon.toml"]', f'brands = ["{SHIPPED_CONFIG.parent}/brands/amazon.toml"]'))
    proc = scan("--json", str(FIXTURES / "mail" / "test_token.eml"), config=cfg)
    assert proc.returncode == 1 and json.loads(proc.stdout)["verdict"] == "suspicious"


def test_exit_status_3_for_unreadable_input_wins_over_1(tmp_path):
    locked = tmp_path / "locked.eml"
    locked.write_bytes(NEWSLETTER)
    locked.chmod(0)
    missing = tmp_path / "missing.eml"
    proc = scan(str(missing), str(FIXTURES / "mail" / "test_token.eml"))
    assert proc.returncode == 3
    assert "no such file or directory" in proc.stdout and "phish" in proc.stdout  # the scan went on
    if os.geteuid() != 0:  # root reads mode-0 files
        assert scan(str(locked)).returncode == 3


def test_exit_status_2_for_usage_and_config_errors(tmp_path):
    assert scan(config=None).returncode == 2  # no PATH
    assert scan("--only", "bogus", "x").returncode == 2
    bad = tmp_path / "c.toml"
    bad.write_text(f'[general]\nbrands = ["{SHIPPED_CONFIG.parent / "brands" / "amazon.toml"}"]\n'
                   "[scoring]\nphish = -1\n")
    proc = scan(str(FIXTURES / "mail"), config=bad)
    assert proc.returncode == 2 and "scoring.phish" in proc.stderr


def test_only_lists_one_level_and_the_summary_counts_all(tmp_path):
    proc = scan("--only", "clean", str(mbox_without_suffix(tmp_path)))
    listed = [ln for ln in proc.stdout.splitlines() if ln and not ln.startswith((" ", "2 messages", "top"))]
    assert listed == [f"clean          0.00  {tmp_path}/Inbox#2"]
    assert "2 messages: phish 1, clean 1" in proc.stdout and proc.returncode == 1
    rows = [json.loads(x) for x in scan("--json", "--only", "phish", str(tmp_path / "Inbox")).stdout.splitlines()]
    assert [r["path"] for r in rows] == [f"{tmp_path}/Inbox#1"]


def test_reasons_are_wrapped_between_words_never_cut():
    """At 60 columns every line fits, and each reason reappears whole when the lines are joined."""
    paths = [str(p) for p in sorted((FIXTURES / "mail").glob("*.eml"))]
    human = scan("--all", *paths, columns=60).stdout
    rows = [json.loads(x) for x in scan("--json", *paths).stdout.splitlines()]
    reasons = [s["reason"] for r in rows for s in r["symbols"] if s["score"] > 0]
    assert reasons
    # Reason lines fit; a message's own line holds its path, which is never broken.
    assert all(len(line) <= 60 for line in human.splitlines() if line.startswith(" "))
    flowing = re.sub(r"\s+", " ", human)
    for reason in reasons:
        assert re.sub(r"\s+", " ", reason) in flowing, reason


def test_summary_names_the_top_symbols():
    proc = scan(str(FIXTURES / "mail"))
    lines = proc.stdout.strip().splitlines()
    total = len(list((FIXTURES / "mail").glob("*.eml")))
    summary = next(i for i, ln in enumerate(lines) if ln.startswith(f"{total} messages: "))
    top = " ".join(lines[summary + 1:])
    assert top.startswith("top symbols: ")
    counts = [int(n) for n in re.findall(r"[A-Z_]+ (\d+)", top)]
    assert counts == sorted(counts, reverse=True) and len(counts) <= 10
    assert not any("ordinary_newsletter.eml" in line for line in lines)  # clean ones only with --all


def test_json_lines_have_the_documented_fields():
    proc = scan("--json", str(FIXTURES / "mail"))
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 1 and len(rows) == len(list((FIXTURES / "mail").glob("*.eml")))
    for row in rows:
        assert {"path", "verdict", "score", "genuine", "symbols", "error"} <= set(row)
        assert row["verdict"] in ("clean", "suspicious", "phish") and row["error"] is None
        for sym in row["symbols"]:
            assert set(sym) == {"name", "score", "reason"}
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["lookalike_sender_otp.eml"]["verdict"] == "phish"
    assert by_name["ordinary_newsletter.eml"]["verdict"] == "clean"


def test_test_token_only_in_the_body_and_exact():
    rows = {Path(r["path"]).name: r for r in map(json.loads, scan("--json", str(FIXTURES / "mail")).stdout.splitlines())}
    assert [s["name"] for s in rows["test_token.eml"]["symbols"]] == ["TEST_PHISH"]
    assert rows["test_token_in_subject_only.eml"]["verdict"] == "clean"
    assert all("TEST_PHISH" not in [s["name"] for s in r["symbols"]] for n, r in rows.items() if n != "test_token.eml")


def test_one_message_with_a_from_line_keeps_its_plain_path(tmp_path):
    eml = tmp_path / "saved.eml"
    eml.write_bytes(b"From alice@example.org Mon Dec  7 09:00:00 2026\n" + TOKEN)
    (row,) = [json.loads(x) for x in scan("--json", str(eml)).stdout.splitlines()]
    assert row["path"] == str(eml) and row["verdict"] == "phish"


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
