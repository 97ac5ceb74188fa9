"""`otpguard explain`: the claim, the decision path, weight x strength = score per symbol, every
link with registered domain and category, and the authentication results."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import FIXTURES, SHIPPED_CONFIG, TRUSTED_ID, genuine_code_mail

GOLDEN = Path(__file__).resolve().parent / "golden"


def explain(*args: str, config: Path = SHIPPED_CONFIG, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otpguard.cli", "explain", "--config", str(config), *args],
                          capture_output=True, input=stdin, timeout=120, env={**os.environ, "COLUMNS": "100"})


def golden(name: str, text: str) -> None:
    text = text.replace(str(FIXTURES), "$FIXTURES")
    path = GOLDEN / name
    if os.environ.get("OTPGUARD_REGOLD") == "1":
        path.write_text(text)
    assert text == path.read_text()


def test_test_token_golden_human_and_json():
    msg = str(FIXTURES / "mail" / "test_token.eml")
    proc = explain(msg)
    assert proc.returncode == 1
    golden("explain_test_token.txt", proc.stdout.decode())
    proc = explain("--json", msg)
    golden("explain_test_token.json", json.dumps(json.loads(proc.stdout), indent=2, ensure_ascii=False) + "\n")


def test_brand_phish_shows_claim_arithmetic_links_and_path():
    data = json.loads(explain("--json", str(FIXTURES / "mail" / "link_text_mismatch.eml")).stdout)
    assert data["verdict"] == "phish" and data["brand"] == "amazon"
    assert "display-name" in data["claim"]["amazon"]["strong"]
    for s in data["symbols"]:  # the arithmetic adds up, symbol by symbol and in total
        assert round(s["weight"] * s["strength"] * s["factor"], 2) == s["score"], s
    assert round(sum(s["score"] for s in data["symbols"]), 2) == data["score"]
    links = {(li["host"], li["registered_domain"], li["category"]) for li in data["links"]}
    assert ("bit.ly", "bit.ly", "shortener") in links
    assert ("www.amazon.com", "amazon.com", "brand") in links
    assert ("collect.notify-center.example", "notify-center.example", "foreign") in links
    path = data["decision_path"]
    assert path[0].startswith("authentication: not checked (offline")
    assert path[1].startswith("claims to be Amazon as the sender (display-name")
    assert path[-1] == f"verdict: phish, {data['score']:.2f} >= scoring.phish 10.00"
    human = explain(str(FIXTURES / "mail" / "link_text_mismatch.eml")).stdout.decode()
    assert "LINK_TEXT_HREF_MISMATCH    5.00 x 1.00 = 5.00" in human
    assert "shortener    bit.ly" in human


def test_genuine_mail_explains_its_authentication(tmp_path):
    cfg = tmp_path / "otpguard.toml"
    text = SHIPPED_CONFIG.read_text().replace("trusted_authserv_ids = []", f'trusted_authserv_ids = ["{TRUSTED_ID}"]')
    cfg.write_text(text.replace('brands = ["brands/amazon.toml"]',
                                f'brands = ["{SHIPPED_CONFIG.parent}/brands/amazon.toml"]'))
    proc = explain("--json", "-", config=cfg, stdin=genuine_code_mail("<explain@amazon.co.jp>"))
    data = json.loads(proc.stdout)
    assert proc.returncode == 0 and data["path"] == "-" and data["verdict"] == "genuine"
    assert data["auth"]["source"] == f"upstream:{TRUSTED_ID}"
    assert data["auth"]["dmarc"]["result"] == "pass" and data["auth"]["dmarc"]["domain"] == "amazon.co.jp"
    assert data["decision_path"][1].startswith("genuine: an aligned DMARC pass for a domain of Amazon")
    assert data["decision_path"][-1] == "verdict: clean (genuine)"


def test_a_mention_in_passing_is_explained_as_such():
    data = json.loads(explain("--json", str(FIXTURES / "mail" / "ordinary_newsletter.eml")).stdout)
    assert data["verdict"] == "clean" and data["claim"]["amazon"] == {"strong": [], "weak": ["body"]}
    assert data["decision_path"][1] == "mentions Amazon only in the body: a claim in passing, not a claim to be Amazon"
    assert data["decision_path"][-1] == "verdict: clean, 0.00 < scoring.suspicious 5.00"


def test_unreadable_file_exits_3():
    proc = explain("/nonexistent/mail.eml")
    assert proc.returncode == 3 and b"no such file or directory" in proc.stdout
