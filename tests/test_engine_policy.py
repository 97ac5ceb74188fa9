"""The engine applies the allow/deny lists and the recipient domain's thresholds after the checks."""
from __future__ import annotations

from dataclasses import replace

from conftest import genuine_code_mail, mail
from otpguard.config import DomainPolicy, PolicyConfig
from otpguard.core.model import Envelope, Level
from otpguard.core.policy import PolicyLists, parse_list
from otpguard.engine import Engine

PHISH = mail("lookalike_sender_otp.eml")


def engine(config, *, allow: str = "", deny: str = "", domains: dict | None = None, **auth) -> Engine:
    lists = PolicyLists(allow=parse_list(allow, which="allow", file="a"), deny=parse_list(deny, which="deny", file="d"))
    cfg = replace(config, auth=replace(config.auth, verify=False, **auth),
                  policy=PolicyConfig(lists=lists, recipient_domains=domains or {}))
    return Engine(cfg, verify=False)


def test_no_lists_change_nothing(config) -> None:
    d = engine(config).analyse(PHISH, Envelope(client_ip="192.0.2.7", rcpt_to=("u@example.org",)))
    assert d.level is Level.PHISH and d.policy == ()


def test_an_allowed_client_address_makes_phish_clean_with_the_reason(config) -> None:
    d = engine(config, allow="ip:192.0.2.0/24").analyse(PHISH, Envelope(client_ip="192.0.2.7"))
    assert d.level is Level.CLEAN and d.policy == ("allow:ip",) and d.score < 0
    hit = next(h for h in d.hits if h.symbol == "POLICY_ALLOW")
    assert hit.reason == "allow list line 1: ip:192.0.2.0/24" and hit.score == config.weight("POLICY_ALLOW")
    # The evidence stays visible beside the exemption.
    assert "LOOKALIKE_FROM_DOMAIN" in d.symbols


def test_a_deny_entry_overrides_a_genuine_result(config) -> None:
    raw = genuine_code_mail("<deny-1@amazon.co.jp>")
    eng = engine(config, deny="dmarc:amazon.co.jp", trusted_authserv_ids=("mx.trusted.example",))
    d = eng.analyse(raw, Envelope(client_ip="192.0.2.25"))
    assert not d.genuine and d.level is Level.PHISH and d.policy == ("deny:dmarc",)
    assert engine(config, trusted_authserv_ids=("mx.trusted.example",)).analyse(raw, Envelope()).genuine


def test_the_recipient_domain_sets_the_thresholds(config) -> None:
    strict = DomainPolicy(actions=config.actions, scoring=replace(config.scoring, suspicious=1.0, phish=2.0))
    raw = b'From: "Amazon fan club" <news@club.example>\r\nTo: u@x\r\nSubject: picks\r\n\r\nBooks.\r\n'
    eng = engine(config, domains={"strict.example": strict})
    assert eng.analyse(raw, Envelope(rcpt_to=("u@example.org",))).level is Level.CLEAN
    d = eng.analyse(raw, Envelope(rcpt_to=("u@strict.example",)))
    assert d.level is Level.PHISH and any("strict.example" in n for n in d.notes)
