"""The engine the symbol fixtures are judged with (tests/fixtures/symbols): the shipped config,
no DNS, plus what some symbols need to exist at all: a trusted upstream authserv-id, an alias
map, and allow/deny lists. Each fixture names its envelope in an X-Test-Envelope field."""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from otpguard.config import Config, load_config
from otpguard.core.model import Envelope, Level
from otpguard.core.policy import PolicyLists, parse_list
from otpguard.engine import Engine

ROOT = Path(__file__).resolve().parents[2]
TRUSTED = "mx.trusted.example"
ALIASES = {"carol@example.org": "carol+amazon@example.org"}
ALLOW = "rcpt:abuse@example.org\n"
DENY = "ip:203.0.113.66\n"


def symbols_config(base: Config | None = None) -> Config:
    cfg = base or load_config(ROOT / "conf" / "otpguard.toml")
    lists = PolicyLists(allow=parse_list(ALLOW, which="allow", file="<symbols allow>"),
                        deny=parse_list(DENY, which="deny", file="<symbols deny>"))
    return replace(cfg, auth=replace(cfg.auth, verify=False, trusted_authserv_ids=(TRUSTED,), trusted_hops=0),
                   aliases=replace(cfg.aliases, map=dict(ALIASES)), policy=replace(cfg.policy, lists=lists))


def engine_for(base: Config | None = None) -> tuple[Engine, Config]:
    cfg = symbols_config(base)
    return Engine(cfg, verify=False), cfg


def envelope_of(raw: bytes) -> Envelope:
    m = re.search(rb"^X-Test-Envelope:([^\r\n]*)", raw, re.M)
    fields = dict(p.strip().split("=", 1) for p in (m.group(1).decode() if m else "").split(";") if "=" in p)
    rcpt = tuple(x for x in fields.get("rcpt", "carol+amazon@example.org").split(",") if x)
    return Envelope(mail_from=fields.get("mail_from"), client_ip=fields.get("client_ip"), helo=fields.get("helo"),
                    client_name=fields.get("client_name"), rcpt_to=rcpt)


def analyse(engine: Engine, raw: bytes):
    return engine.analyse(raw, envelope_of(raw))


def level_without(engine: Engine, config: Config, raw: bytes, symbol: str) -> Level:
    """The level of raw with symbol's weight set to 0 through the config (the ablation)."""
    weights = dict(config.scoring.weights, **{symbol: 0.0})
    cfg = replace(config, scoring=replace(config.scoring, weights=weights))
    return Engine(cfg, verify=False).analyse(raw, envelope_of(raw)).level
