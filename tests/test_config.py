"""Configuration: every shipped key is read, bad keys are named with their file."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import SHIPPED_CONFIG
from otpguard.config import ConfigError, cpu_list, load_config
from otpguard.core.pipeline import all_symbols


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "brands").mkdir(exist_ok=True)
    (tmp_path / "brands" / "amazon.toml").write_bytes((SHIPPED_CONFIG.parent / "brands" / "amazon.toml").read_bytes())
    path = tmp_path / "otpguard.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _leaves(data: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else k
        out.extend(_leaves(v, key) if isinstance(v, dict) and v else [key])
    return out


def test_shipped_config_loads_with_its_brand_profile():
    cfg = load_config(SHIPPED_CONFIG)
    assert cfg.brands[0].id == "amazon" and cfg.brands[0].owns("amazon.co.jp")
    assert cfg.milter.on_error == "accept" and cfg.auth.scope == "brand"


# Tables keyed by language are free-form by design; every other key has a fixed name.
FREE_FORM = ("bursts.subject_prefix.", "bursts.notice.")


@pytest.mark.parametrize("key", [k for k in _leaves(tomllib.loads(SHIPPED_CONFIG.read_text(encoding="utf-8")))
                                 if not k.startswith(FREE_FORM)])
def test_every_shipped_key_is_read(tmp_path, key):
    # The loader rejects unknown keys, so a shipped key it did not read would fail to load.
    # Renaming each shipped key must therefore be reported, naming that very key.
    text = SHIPPED_CONFIG.read_text(encoding="utf-8")
    section, _, name = key.rpartition(".")
    data = tomllib.loads(text)
    table = data
    for part in section.split(".") if section else []:
        table = table[part]
    table[name + "_typo"] = table.pop(name)
    path = _write(tmp_path, _dump(data))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == f"{section + '.' if section else ''}{name}_typo"
    assert err.value.file == str(path)


def test_every_symbol_has_a_shipped_weight():
    cfg = load_config(SHIPPED_CONFIG)
    assert set(all_symbols()) <= set(cfg.scoring.weights)


@pytest.mark.parametrize("text,key", [
    ('[milter]\non_error = "drop"\n', "milter.on_error"),
    ('[milter]\nsocket = "tcp:1234"\n', "milter.socket"),
    ('[scoring]\nsuspicious = "five"\n', "scoring.suspicious"),
    ('[scoring]\nsuspicious = 9.0\nphish = 5.0\n', "scoring.phish"),
    ('[actions]\nphish = ["tag", "explode"]\n', "actions.phish"),
    ('[auth]\nport = true\n', "auth.port"),
    ('[state]\nbackend = "redis"\n', "state.redis_url"),
    ('[general]\nbrands = ["brands/nope.toml"]\n', "general.brands"),
    ('[milter]\ncpu_affinity = "first"\n', "milter.cpu_affinity"),
    ('[milter]\ncpu_affinity = "3-1"\n', "milter.cpu_affinity"),
    ('[milter]\ncpu_affinity = "\u00b2"\n', "milter.cpu_affinity"),
    ('[milter]\ncpu_affinity = "0-99999999"\n', "milter.cpu_affinity"),
    ('[auth]\ntrusted_hops = -1\n', "auth.trusted_hops"),
    ('[auth]\nprobe_interval_seconds = 1\n', "auth.probe_interval_seconds"),
    ('[logging]\npriority_prefix = "sometimes"\n', "logging.priority_prefix"),
    ('[actions]\nheader_hygiene = "yes"\n', "actions.header_hygiene"),
    ('[policy]\nallow_file = "missing.list"\n', "policy.allow_file"),
    ('[policy.recipient_domains."not a domain".actions]\nmonitor = true\n', 'policy.recipient_domains.not a domain'),
    ('[policy.recipient_domains."ex.example".actions]\nphish = ["explode"]\n',
     "policy.recipient_domains.ex.example.actions.phish"),
    ('[policy.recipient_domains."ex.example".actions]\nsubject = ["tag"]\n',
     "policy.recipient_domains.ex.example.actions.subject"),
    ('[policy.recipient_domains."ex.example".scoring]\nsuspicious = 9.0\nphish = 5.0\n',
     "policy.recipient_domains.ex.example.scoring.phish"),
    ('[milter]\nworkers = 0\n', "milter.workers"),
    ('[milter]\nworkers = 4000\n', "milter.workers"),
    ('[milter]\nworkers = "all"\n', "milter.workers"),
    ('[milter]\nworkers = 2.5\n', "milter.workers"),
    ('[milter]\nworkers = true\n', "milter.workers"),
])
def test_bad_values_name_the_key_and_file(tmp_path, text, key):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == key and str(path) in str(err.value)


def test_check_config_command_reports_one_clear_line_and_exits_nonzero(tmp_path):
    path = _write(tmp_path, '[milter]\non_error = "drop"\n')
    proc = subprocess.run([sys.executable, "-m", "otpguard.cli", "check-config", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "milter.on_error" in lines[0]
    ok = subprocess.run([sys.executable, "-m", "otpguard.cli", "check-config", str(SHIPPED_CONFIG)],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "OK" in ok.stdout


@pytest.mark.parametrize("key,old,new", [
    ("extra_lures.payment", "payment = [", 'payment = ["\\u200b", '),
    ("names", 'names = ["amazon", ', 'names = [" \\u00ad ", "amazon", '),
])
def test_a_brand_phrase_that_normalises_to_nothing_is_refused(tmp_path, key, old, new):
    # Matched on normalised text, such a phrase would be found in every message.
    path = _write(tmp_path, 'brands = ["brands/amazon.toml"]\n')
    profile = tmp_path / "brands" / "amazon.toml"
    text = profile.read_text(encoding="utf-8")
    assert old in text
    profile.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert key in str(err.value) and "amazon.toml" in str(err.value) and "every message" in str(err.value)


def test_bad_toml_is_reported_with_the_file(tmp_path):
    path = _write(tmp_path, "[milter\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def _dump(data: dict) -> str:
    """Minimal TOML writer for the test (tables, strings, numbers, booleans, lists)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return "[" + ", ".join(value(x) for x in v) + "]"

    lines: list[str] = []

    def table(d: dict, name: str) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        subs = {k: v for k, v in d.items() if isinstance(v, dict)}
        if name:
            lines.append(f"[{name}]")
        for k, v in scalars.items():
            lines.append(f'"{k}" = {value(v)}')
        for k, v in subs.items():
            table(v, f"{name}.{k}" if name else k)

    table(data, "")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("spec,cpus", [("auto", None), ("none", ()), ("3", (3,)), ("2, 0", (0, 2)),
                                       ("0-2,5", (0, 1, 2, 5)), (" NONE ", ())])
def test_cpu_affinity_spellings(spec, cpus):
    assert cpu_list(spec) == cpus


def test_policy_lists_are_read_relative_to_the_config_and_errors_name_the_list(tmp_path):
    (tmp_path / "allow.list").write_text("dkim:partner.example\nip:192.0.2.0/24\n")
    (tmp_path / "deny.list").write_text("from:spoofer.example\n")
    path = _write(tmp_path, '[policy]\nallow_file = "allow.list"\ndeny_file = "deny.list"\n')
    cfg = load_config(path)
    assert [e.spelling for e in cfg.policy.lists.allow] == ["dkim:partner.example", "ip:192.0.2.0/24"]
    assert [e.spelling for e in cfg.policy.lists.deny] == ["from:spoofer.example"]
    (tmp_path / "allow.list").write_text("dkim:partner.example\nfrom:partner.example\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.file == str(tmp_path / "allow.list") and err.value.key == "line 2"
    assert "refused" in err.value.problem


def test_recipient_domain_overrides_change_only_what_they_name(tmp_path):
    path = _write(tmp_path, """
[policy.recipient_domains."Strict.Example".actions]
phish = ["reject"]
[policy.recipient_domains."Strict.Example".scoring]
phish = 8.0
[policy.recipient_domains."trial.example".actions]
monitor = true
""")
    cfg = load_config(path)
    strict = cfg.policy.recipient_domains["strict.example"]
    assert strict.actions.by_level["phish"] == ("reject",)
    assert strict.actions.by_level["suspicious"] == cfg.actions.by_level["suspicious"]
    assert (strict.scoring.suspicious, strict.scoring.phish) == (cfg.scoring.suspicious, 8.0)
    assert strict.scoring.weights == cfg.scoring.weights
    assert cfg.actions_for(("a@strict.example",)).by_level["phish"] == ("reject",)
    assert cfg.actions_for(("a@trial.example",)).monitor and not cfg.actions.monitor
    assert cfg.actions_for(("a@strict.example", "b@trial.example")) is cfg.actions
    assert cfg.scoring_for(("a@strict.example",)).phish == 8.0 and cfg.scoring_for(()) is cfg.scoring


def test_check_config_warns_about_inconsistent_budgets(tmp_path):
    path = _write(tmp_path, '[analysis]\ntime_budget_seconds = 4.0\n[auth]\nmessage_budget = 5.0\n')
    proc = subprocess.run([sys.executable, "-m", "otpguard.cli", "check-config", str(path)],
                          capture_output=True, text=True)
    # The file loads (exit 0); the warning names both keys, as otpguard doctor does.
    assert proc.returncode == 0
    assert "warning: analysis.time_budget_seconds: 4 s is not above auth.message_budget (5 s)" in proc.stderr


def test_config_lookup_order(tmp_path) -> None:
    """--config, then $OTPGUARD_CONFIG, then /etc/otpguard/otpguard.toml if present, then the
    packaged default (otpguard/defaults, which is conf/ in a checkout)."""
    from otpguard.config import locate_config, packaged_config

    system = tmp_path / "etc-otpguard.toml"
    env = {"OTPGUARD_CONFIG": "/from/env.toml"}
    assert locate_config("/given.toml", environ=env, system=system).source == "--config"
    assert locate_config(None, environ=env, system=system).path == Path("/from/env.toml")
    assert locate_config(None, environ={}, system=system).source == "packaged default"
    assert locate_config(None, environ={}, system=system).path == packaged_config()
    system.write_text("")
    choice = locate_config(None, environ={}, system=system)
    assert (choice.source, choice.path) == ("system", system)
    assert choice.describe() == f"{system} (the system configuration)"
    assert packaged_config().read_bytes() == (Path(__file__).resolve().parents[1] / "conf" / "otpguard.toml").read_bytes()


def test_quarantine_section_is_validated(tmp_path) -> None:
    shipped = Path(__file__).resolve().parents[1] / "conf" / "otpguard.toml"
    base = shipped.read_text().replace('brands = ["brands/amazon.toml"]',
                                       f'brands = ["{shipped.parent}/brands/amazon.toml"]')
    for old, new, key in (('audit_log = "syslog"', 'audit_log = "relative.log"', "quarantine.audit_log"),
                          ('released_verdict = "released"', 'released_verdict = "Released!"',
                           "quarantine.released_verdict"),
                          ('released_verdict = "released"', 'released_verdict = "released"\nextra = 1',
                           "quarantine.extra")):
        bad = tmp_path / "c.toml"
        bad.write_text(base.replace(old, new))
        with pytest.raises(ConfigError) as err:
            load_config(bad)
        assert err.value.key == key
    good = tmp_path / "g.toml"
    good.write_text(base.replace('audit_log = "syslog"', f'audit_log = "{tmp_path}/audit.log"'))
    assert load_config(good).quarantine.audit_log == f"{tmp_path}/audit.log"


@pytest.mark.parametrize("text,workers", [("", "auto"), ('[milter]\nworkers = "AUTO"\n', "AUTO"),
                                          ("[milter]\nworkers = 1\n", 1), ("[milter]\nworkers = 6\n", 6)])
def test_workers_spellings(tmp_path, text, workers):
    assert load_config(_write(tmp_path, text)).milter.workers == workers
