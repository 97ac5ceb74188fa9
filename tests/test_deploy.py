"""Deploy files: Prometheus config and rules (promtool), the Grafana dashboard, the systemd unit,
and the promise that every metric they use is one otpguard really exports."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from otpguard.config import MetricsConfig, MilterConfig
from otpguard.ops.metrics import Metrics, parse_listen
from otpguard.core.model import AuthSummary, Decision, DkimResult, Level, ScoredHit
from support.gate import unavailable

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "otpguard-rules.yml"
PROM_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "otpguard-dashboard.json"
UNIT = DEPLOY / "systemd" / "otpguard.service"
GUIDE = ROOT / "docs" / "admin-guide.md"
METRIC_NAME = re.compile(r"\botpguard_[a-z_]+")


def tool(name: str) -> str:
    """Path of a checker; skip without it, fail under CI=true (CI must not pass by checking nothing)."""
    path = shutil.which(name)
    if path is None:
        unavailable(name, f"not found (Debian package: {'prometheus' if name == 'promtool' else 'systemd'})")
    return path


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd)


# --- metric names ---------------------------------------------------------------------------

def exported_sample_names() -> set[str]:
    """Sample names of a Metrics registry after one of each event."""
    m = Metrics(symbols=("OTP_LURE",), process_metrics=False)
    m.record_message(Decision(level=Level.PHISH, score=12.0, brand="amazon",
                              hits=(ScoredHit(symbol="OTP_LURE", score=2.5, reason="r"),),
                              auth=AuthSummary(source="local", spf="fail", dmarc="fail", arc="none",
                                               dkim=(DkimResult(domain="d", selector="s", result="fail"),))),
                     "quarantine", 0.02)
    m.record_error("dns")
    m.dns_query(0.01, "ok")
    m.analysis_started()
    m.analysis_ended()
    m.config_reloaded(True)
    m.burst_detected(new=True)
    m.alias_mismatch()
    m.set_quarantine_source(lambda: 3)
    m.record_failed_message("tempfail")
    m.dns_probe(True)
    m.set_worker_cpu_source(lambda: 1.5)
    text = generate_latest(m.registry).decode()
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


def referenced_names(path: Path) -> set[str]:
    return set(METRIC_NAME.findall(path.read_text()))


@pytest.mark.parametrize("path", [RULES, DASHBOARD], ids=lambda p: p.name)
def test_every_metric_used_by_rules_and_dashboard_exists(path: Path) -> None:
    exported = exported_sample_names()
    used = referenced_names(path)
    assert used, f"{path.name} uses no otpguard metric?"
    missing = sorted(used - exported)
    assert not missing, f"{path.name} uses metrics otpguard does not export: {missing}"


def test_admin_guide_names_only_real_metrics_and_every_alert() -> None:
    exported = exported_sample_names()
    # Prose may name a histogram by its family name (otpguard_analysis_seconds).
    missing = sorted(n for n in referenced_names(GUIDE)
                     if n not in exported and f"{n}_bucket" not in exported)
    assert not missing, f"admin-guide.md names metrics otpguard does not export: {missing}"
    guide = GUIDE.read_text()
    for alert in re.findall(r"^\s*- alert: (\w+)", RULES.read_text(), re.M):
        assert alert in guide, f"alert {alert} is not explained in the admin guide"


def test_admin_guide_main_cf_snippet_is_valid_postfix(tmp_path: Path) -> None:
    guide = GUIDE.read_text()
    block = re.search(r"Add to `/etc/postfix/main.cf`:\s*```\n(.*?)```", guide, re.S)
    assert block, "main.cf snippet not found in the admin guide"
    snippet = block.group(1)
    for line in ("milter_default_action = tempfail", "milter_protocol = 6",
                 "smtpd_milters = unix:otpguard/otpguard.sock", "non_smtpd_milters = $smtpd_milters"):
        assert line in snippet.splitlines(), line
    # The spelling names the shipped socket from Postfix's queue directory, chrooted or not.
    from otpguard.mta.postfixcf import main_cf_spelling
    assert main_cf_spelling(MilterConfig().socket) == "unix:otpguard/otpguard.sock"
    assert "smtpd_milters = unix:otpguard/otpguard.sock" in (DEPLOY / "postfix" / "main.cf.snippet").read_text()
    postconf = shutil.which("postconf") or ("/usr/sbin/postconf" if Path("/usr/sbin/postconf").exists() else None)
    if postconf is None:
        unavailable("postconf", "not found (Debian package: postfix)")
    (tmp_path / "main.cf").write_text(snippet)
    (tmp_path / "master.cf").write_text("")
    res = run(postconf, "-c", str(tmp_path), "-n")
    # postconf warns about parameters it does not know ("unused parameter"): a typo.
    assert res.returncode == 0 and "warning" not in res.stderr, res.stderr
    assert "smtpd_milters = unix:otpguard/otpguard.sock" in res.stdout


def test_dashboard_and_rules_cover_the_operator_questions() -> None:
    dash, rules = referenced_names(DASHBOARD), referenced_names(RULES)
    for name in ("otpguard_messages_total", "otpguard_symbols_total", "otpguard_analysis_seconds_bucket",
                 "otpguard_auth_total", "otpguard_code_bursts_total", "otpguard_quarantine_messages",
                 "otpguard_errors_total", "otpguard_dns_query_seconds_bucket"):
        assert name in dash, name
    alerts = set(re.findall(r"^\s*- alert: (\w+)", RULES.read_text(), re.M))
    assert {"OtpguardDown", "OtpguardHighPhishRate", "OtpguardErrors", "OtpguardCodeBurst",
            "OtpguardSlowAnalysis", "OtpguardStateStoreDown", "OtpguardConfigReloadFailed",
            "OtpguardNoMail", "OtpguardDnsProbeFailing"} <= alerts
    assert "otpguard_dns_probe_success" in dash and "otpguard_policy_matches_total" in dash
    assert "otpguard_errors_total" in rules and "otpguard_code_bursts_total" in rules


# --- Prometheus -----------------------------------------------------------------------------

def test_promtool_check_rules() -> None:
    res = run(tool("promtool"), "check", "rules", str(RULES))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_check_config() -> None:
    res = run(tool("promtool"), "check", "config", str(PROM_CONFIG))
    assert res.returncode == 0, res.stdout + res.stderr


def test_scrape_target_is_the_default_listen_address() -> None:
    host, port = parse_listen(MetricsConfig().listen)
    assert f'"{host}:{port}"' in PROM_CONFIG.read_text()
    assert re.search(r"job_name:\s*otpguard\b", PROM_CONFIG.read_text())
    assert 'up{job="otpguard"}' in RULES.read_text()


def _rules_without_annotations(src: str) -> str:
    """The rules file minus annotations, so promtool unit tests compare labels only."""
    out, skip_deeper_than = [], None
    for line in src.splitlines():
        indent = len(line) - len(line.lstrip())
        if skip_deeper_than is not None:
            if not line.strip() or indent > skip_deeper_than:
                continue
            skip_deeper_than = None
        if line.strip() == "annotations:":
            skip_deeper_than = indent
            continue
        out.append(line)
    return "\n".join(out) + "\n"


ALERT_TESTS = """
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="otpguard", instance="mx1:9469"}'
        values: '1 1 0x20'
      - series: 'otpguard_messages_total{job="otpguard", instance="mx1:9469", verdict="phish", action="quarantine"}'
        values: '0+10x60'
      - series: 'otpguard_messages_total{job="otpguard", instance="mx1:9469", verdict="clean", action="accept"}'
        values: '0+10x60'
      - series: 'otpguard_errors_total{job="otpguard", instance="mx1:9469", stage="dns"}'
        values: '0+5x60'
      - series: 'otpguard_errors_total{job="otpguard", instance="mx1:9469", stage="state"}'
        values: '0+1x60'
      - series: 'otpguard_code_bursts_total{job="otpguard", instance="mx1:9469"}'
        values: '0x5 1x55'
      - series: 'otpguard_analysis_seconds_bucket{job="otpguard", instance="mx1:9469", le="2.5"}'
        values: '0x60'
      - series: 'otpguard_analysis_seconds_bucket{job="otpguard", instance="mx1:9469", le="5.0"}'
        values: '0+20x60'
      - series: 'otpguard_analysis_seconds_bucket{job="otpguard", instance="mx1:9469", le="+Inf"}'
        values: '0+20x60'
      - series: 'otpguard_config_last_reload_successful{job="otpguard", instance="mx1:9469"}'
        values: '1 1 0x20'
      - series: 'otpguard_quarantine_messages{job="otpguard", instance="mx1:9469"}'
        values: '10x60'
    alert_rule_test:
      - eval_time: 6m
        alertname: OtpguardDown
        exp_alerts:
          - exp_labels: {severity: critical, job: otpguard, instance: "mx1:9469"}
      - eval_time: 1m
        alertname: OtpguardDown
        exp_alerts: []
      - eval_time: 40m
        alertname: OtpguardHighPhishRate
        exp_alerts:
          - exp_labels: {severity: warning, instance: "mx1:9469"}
      - eval_time: 40m
        alertname: OtpguardErrors
        exp_alerts:
          - exp_labels: {severity: warning, instance: "mx1:9469"}
      - eval_time: 40m
        alertname: OtpguardStateStoreDown
        exp_alerts:
          - exp_labels: {severity: warning, instance: "mx1:9469"}
      - eval_time: 8m
        alertname: OtpguardCodeBurst
        exp_alerts:
          - exp_labels: {severity: info, instance: "mx1:9469"}
      - eval_time: 40m
        alertname: OtpguardCodeBurst
        exp_alerts: []
      - eval_time: 40m
        alertname: OtpguardSlowAnalysis
        exp_alerts:
          - exp_labels: {severity: warning, instance: "mx1:9469"}
      - eval_time: 10m
        alertname: OtpguardConfigReloadFailed
        exp_alerts:
          - exp_labels: {severity: warning, job: otpguard, instance: "mx1:9469"}
      - eval_time: 40m
        alertname: OtpguardQuarantineLarge
        exp_alerts: []
  - interval: 1m
    input_series:
      # Low volume: one phish among a trickle is not a campaign; only state errors.
      - series: 'otpguard_messages_total{instance="mx2:9469", verdict="phish", action="quarantine"}'
        values: '0+1x60'
      - series: 'otpguard_errors_total{instance="mx2:9469", stage="state"}'
        values: '0+1x60'
    alert_rule_test:
      - eval_time: 40m
        alertname: OtpguardHighPhishRate
        exp_alerts: []
      - eval_time: 40m
        alertname: OtpguardErrors
        exp_alerts: []
  - interval: 1m
    input_series:
      # mx3 is up but Postfix never reaches it (a chrooted smtpd, an absolute socket path); mx4 gets
      # mail. Both processes started at time 0. mx3's resolver stops seeing the brand at minute 20.
      - series: 'up{job="otpguard", instance="mx3:9469"}'
        values: '1x150'
      - series: 'process_start_time_seconds{job="otpguard", instance="mx3:9469"}'
        values: '0x150'
      - series: 'otpguard_messages_total{job="otpguard", instance="mx3:9469", verdict="clean", action="accept"}'
        values: '0x150'
      - series: 'up{job="otpguard", instance="mx4:9469"}'
        values: '1x150'
      - series: 'process_start_time_seconds{job="otpguard", instance="mx4:9469"}'
        values: '0x150'
      - series: 'otpguard_messages_total{job="otpguard", instance="mx4:9469", verdict="clean", action="accept"}'
        values: '0+1x150'
      - series: 'otpguard_dns_probe_success{job="otpguard", instance="mx3:9469"}'
        values: '1x20 0x130'
      - series: 'otpguard_dns_probe_success{job="otpguard", instance="mx4:9469"}'
        values: '1x150'
    alert_rule_test:
      - eval_time: 50m
        alertname: OtpguardNoMail
        exp_alerts: []   # running for less than an hour: too early to tell
      - eval_time: 90m
        alertname: OtpguardNoMail
        exp_alerts:
          - exp_labels: {severity: warning, job: otpguard, instance: "mx3:9469"}
      - eval_time: 25m
        alertname: OtpguardDnsProbeFailing
        exp_alerts: []
      - eval_time: 40m
        alertname: OtpguardDnsProbeFailing
        exp_alerts:
          - exp_labels: {severity: warning, job: otpguard, instance: "mx3:9469"}
"""


def promtool_test_rules(tmp_path: Path, tests: str) -> None:
    """promtool's unit tests (YAML) against the shipped rules."""
    promtool = tool("promtool")
    (tmp_path / "rules.yml").write_text(_rules_without_annotations(RULES.read_text()))
    (tmp_path / "tests.yml").write_text(tests)
    res = run(promtool, "test", "rules", "tests.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_alert_rules_fire_when_they_should(tmp_path: Path) -> None:
    promtool_test_rules(tmp_path, ALERT_TESTS)


WORKER_ALERT_TESTS = """
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # mx1: a worker replaced every two minutes; mx2: one overrun in an hour.
      - series: 'otpguard_worker_restarts_total{instance="mx1:9469", reason="died"}'
        values: '0 0 1 1 2 2 3 3 4 4 5 5 6 6 7 7 8 8 9 9 10 10 11 11 12 12 13 13 14 14 15'
      - series: 'otpguard_worker_restarts_total{instance="mx2:9469", reason="overran"}'
        values: '0x10 1x50'
    alert_rule_test:
      - eval_time: 4m
        alertname: OtpguardWorkersRestarting
        exp_alerts: []
      - eval_time: 25m
        alertname: OtpguardWorkersRestarting
        exp_alerts:
          - exp_labels: {severity: warning, instance: "mx1:9469"}
"""


def test_worker_restart_alert_fires_on_a_pattern_not_on_one_overrun(tmp_path: Path) -> None:
    promtool_test_rules(tmp_path, WORKER_ALERT_TESTS)


# --- Grafana --------------------------------------------------------------------------------

def dashboard_exprs(dash: dict) -> list[str]:
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dash.get("annotations", {}).get("list", []) if "expr" in a]
    return exprs


def test_dashboard_is_well_formed() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "instance"} <= variables
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        for t in p["targets"]:
            # One variable data source, so the dashboard imports into any Grafana.
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert 'instance=~"$instance"' in t["expr"], (p["title"], t["expr"])
    exprs = " ".join(dashboard_exprs(dash))
    assert "histogram_quantile(0.99" in exprs and "otpguard_analysis_seconds_bucket" in exprs


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool has no query linter, but it parses every rule expression: wrap the panel queries
    # as recording rules, with Grafana's variables replaced by what Grafana would send.
    promtool = tool("promtool")
    dash = json.loads(DASHBOARD.read_text())
    subst = {"$__rate_interval": "1m", "$__range": "6h", "$__interval": "30s", "$instance": ".*"}
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(dashboard_exprs(dash)):
        for var, value in subst.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, expr
        lines += [f"      - record: dashboard:expr_{i}", f"        expr: {json.dumps(expr)}"]
    (tmp_path / "dash-rules.yml").write_text("\n".join(lines) + "\n")
    res = run(promtool, "check", "rules", str(tmp_path / "dash-rules.yml"))
    assert res.returncode == 0, res.stdout + res.stderr


# --- systemd --------------------------------------------------------------------------------

def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd unit syntax: [Section] headers, Key=Value lines, repeatable keys, # and ; comments."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not Key=Value: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_unit_static_hardening() -> None:
    # Runs everywhere, with or without systemd-analyze.
    unit = parse_unit(UNIT.read_text())
    svc = unit["Service"]

    def one(key: str) -> str:
        assert key in svc, f"[Service] {key}= missing"
        return svc[key][-1]

    assert one("User") == "otpguard"
    assert one("ExecStart") == "/usr/local/bin/otpguard serve --config /etc/otpguard/otpguard.toml"
    assert re.fullmatch(r"/bin/kill -(HUP|s HUP) \$MAINPID", one("ExecReload"))
    assert one("ProtectSystem") == "strict"
    assert one("ProtectHome") in ("yes", "true", "read-only", "tmpfs")
    for key in ("NoNewPrivileges", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
                "ProtectKernelModules", "ProtectControlGroups", "RestrictSUIDSGID", "RestrictRealtime",
                "LockPersonality"):
        assert one(key) in ("yes", "true"), key
    assert one("CapabilityBoundingSet") == ""
    # The default socket lives in Postfix's queue directory, in a directory the unit makes (as
    # root, before the sandbox) for the service user and group postfix, and may write to.
    socket_dir = str(Path(MilterConfig().socket.removeprefix("unix:")).parent)
    assert socket_dir == "/var/spool/postfix/otpguard"
    assert f"+/usr/bin/install -d -o otpguard -g postfix -m 0750 {socket_dir}" in svc["ExecStartPre"]
    assert socket_dir in " ".join(svc["ReadWritePaths"]).split()
    assert one("RuntimeDirectory") == "otpguard"
    assert one("SyslogLevelPrefix") in ("yes", "true")
    # Nothing outside /run/otpguard and the private /tmp is writable unless a path is named,
    # and never a whole tree.
    for path in " ".join(svc.get("ReadWritePaths", [])).split():
        assert path.lstrip("-") not in ("/", "/var", "/etc", "/usr", "/home", "/var/spool", "/run"), path
    assert "multi-user.target" in unit["Install"]["WantedBy"]
    # Resource syscalls are denied, except the one milter.cpu_affinity ("auto" by default) needs.
    filters = svc["SystemCallFilter"]
    assert filters[0] == "@system-service" and "~@privileged @resources" in filters
    assert MilterConfig().cpu_affinity == "auto"
    assert filters.index("sched_setaffinity") > filters.index("~@privileged @resources")


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        unavailable("systemd-analyze", "not installed (Debian package: systemd)")
    # verify refuses a unit whose ExecStart binary is missing: point it at a stub, arguments kept.
    stub = tmp_path / "otpguard"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = UNIT.read_text().replace("/usr/local/bin/otpguard", str(stub))
    unit = tmp_path / "otpguard.service"
    unit.write_text(text)
    res = run(analyze, "verify", "--man=no", str(unit))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    # Unknown or misspelt keys are only warnings to systemd: treat them as failures here.
    assert not re.search(r"unknown|failed to parse|invalid|ignoring", out, re.I), out

    help_text = run(analyze, "security", "--help").stdout
    if "--offline" in help_text and "--threshold" in help_text:
        # The threshold is on a 0..100 scale: 20 is an exposure of 2.0 ("OK" in systemd's words).
        res = run(analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", str(unit))
        assert res.returncode == 0, res.stdout + res.stderr


# --- Postfix header_checks backstop ---------------------------------------------------------------

def test_header_checks_backstop_deletes_exactly_the_forgeries(tmp_path: Path) -> None:
    postmap = shutil.which("postmap") or ("/usr/sbin/postmap" if Path("/usr/sbin/postmap").exists() else None)
    if postmap is None:
        unavailable("postmap", "not found (Debian package: postfix)")
    (tmp_path / "main.cf").write_text("")
    table = f"regexp:{DEPLOY / 'postfix' / 'otpguard-header-checks'}"
    cases = {"X-OTPGuard-Verdict: clean; score=0": "IGNORE", "x-otpguard-symbols: A(1)": "IGNORE",
             "Authentication-Results: otpguard; dmarc=pass": "IGNORE",
             "Authentication-Results:  otpguard (comment); spf=pass": "IGNORE",
             "Authentication-Results: otpguard": "IGNORE",
             "Authentication-Results: otpguard.example.org; dmarc=pass": "",
             "Authentication-Results: mx.example.org; dmarc=pass": "", "X-Other: otpguard": ""}
    for line, want in cases.items():
        res = subprocess.run([postmap, "-c", str(tmp_path), "-q", line, table], capture_output=True, text=True,
                             timeout=30)
        assert res.stdout.strip() == want, (line, res.stdout, res.stderr)
    guide = GUIDE.read_text()
    assert "header_checks = regexp:/etc/postfix/otpguard-header-checks" in guide


# --- make run installs only what running needs ----------------------------------------------------

def test_make_run_installs_only_what_running_needs(tmp_path: Path) -> None:
    """tools/sysdeps.sh as a normal user on a machine that has nothing: it lists what it would
    install; `run` never lists the test-only servers, `test` does."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "id").write_text("#!/bin/sh\necho 1000\n")
    (fake / "nopython").write_text("#!/bin/sh\nexit 1\n")
    for f in fake.iterdir():
        f.chmod(0o755)
    env = {"PATH": str(fake), "PYTHON": str(fake / "nopython")}
    bash = shutil.which("bash") or "/bin/bash"

    def missing(mode: str) -> set[str]:
        res = subprocess.run([bash, str(ROOT / "tools" / "sysdeps.sh"), mode], capture_output=True, text=True,
                             env=env, timeout=60)
        assert res.returncode == 0, res.stderr
        line = res.stderr.strip()
        assert line.startswith("missing Debian packages: "), line
        return set(line.removeprefix("missing Debian packages: ").split(" (")[0].split())

    run_pkgs = missing("run")
    assert {"gcc", "python3-dev", "python3-venv"} <= run_pkgs
    assert not run_pkgs & {"postfix", "dnsmasq-base", "redis-server", "prometheus", "systemd"}
    test_pkgs = missing("test")
    # (postfix and dnsmasq are also looked for in /usr/sbin, which this machine may have)
    assert run_pkgs <= test_pkgs and {"redis-server", "prometheus", "systemd"} <= test_pkgs
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run: setup$", makefile, re.M) and re.search(r"^setup: sysdeps venv$", makefile, re.M)
    assert re.search(r"^test: setup-test$", makefile, re.M)
    script = (ROOT / "tools" / "sysdeps.sh").read_text()
    # Debian's Prometheus listens on every interface by default: never left like that.
    assert "--web.listen-address=127.0.0.1:9090" in script and "policy-rc.d" in script


def _makefile_packages() -> set[str]:
    """Every Debian package `make` can install: tools/sysdeps.sh's `need` calls (run and test)
    and the Makefile's *_PACKAGES lists (the .deb build)."""
    found: set[str] = set()
    for m in re.finditer(r"^[A-Z_]*PACKAGES\s*:=(.*)$", (ROOT / "Makefile").read_text(), re.M):
        found.update(m.group(1).split())
    for m in re.finditer(r"\bneed ([a-z0-9.+ -]+?)(?:;|$)", (ROOT / "tools" / "sysdeps.sh").read_text(), re.M):
        found.update(m.group(1).split())
    return found


def test_readme_lists_exactly_the_packages_the_makefile_installs() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("Debian packages the Makefile installs")
    paragraph = readme[start:readme.index("\n\n", start)]
    listed = set(re.findall(r"`([a-z0-9][a-z0-9.+-]+)`", paragraph)) - {"make", "run", "test", "deb"}
    listed -= {w for w in listed if w.startswith("make ")}
    assert listed == _makefile_packages()


def test_make_eval_without_a_corpus_says_how_to_get_one(tmp_path: Path) -> None:
    res = subprocess.run(["make", "-s", "eval", f"CORPUS={tmp_path}/none"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode != 0
    assert "no corpus at" in res.stderr and "CORPUS=" in res.stderr and "Traceback" not in res.stderr + res.stdout
