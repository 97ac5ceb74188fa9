"""`otpguard doctor` and the checks it shares with `check-config`: Postfix's view of the socket.

The end-to-end checks against a chrooted Postfix are in tests/mta/test_e2e_chroot.py; here the
reasoning is tested on its own, with Debian's stock master.cf where a real postconf is needed.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from support.gate import unavailable

from otpguard.mta.postfixcf import (PostfixView, Service, connect_path, main_cf_spelling, parse_milters,
                                    postconf_path, read_postfix)
from otpguard.preflight import config_problems, milter_handshake, postfix_problems

DEBIAN_MASTER = Path("/usr/share/postfix/master.cf.dist")


def test_main_cf_spelling_is_relative_to_the_queue_directory() -> None:
    assert main_cf_spelling("unix:/var/spool/postfix/otpguard/otpguard.sock") == "unix:otpguard/otpguard.sock"
    assert main_cf_spelling("unix:/var/spool/postfix//otpguard/../otpguard/x.sock") == "unix:otpguard/x.sock"
    assert main_cf_spelling("unix:/run/otpguard/otpguard.sock") == "unix:/run/otpguard/otpguard.sock"
    assert main_cf_spelling("unix:/var/spool/postfixes/x.sock") == "unix:/var/spool/postfixes/x.sock"
    assert main_cf_spelling("inet:127.0.0.1:8891") == "inet:127.0.0.1:8891"
    assert main_cf_spelling("unix:/srv/pf/q/otpguard/s.sock", "/srv/pf/q") == "unix:otpguard/s.sock"


@pytest.mark.parametrize("spec, chroot, path", [
    ("unix:otpguard/otpguard.sock", True, "/var/spool/postfix/otpguard/otpguard.sock"),
    ("unix:otpguard/otpguard.sock", False, "/var/spool/postfix/otpguard/otpguard.sock"),
    ("unix:/run/otpguard/otpguard.sock", False, "/run/otpguard/otpguard.sock"),
    # What broke Debian installs: inside the chroot, an absolute path is below the queue directory.
    ("unix:/run/otpguard/otpguard.sock", True, "/var/spool/postfix/run/otpguard/otpguard.sock"),
    ("unix:/otpguard/otpguard.sock", True, "/var/spool/postfix/otpguard/otpguard.sock"),
    ("inet:127.0.0.1:8891", True, None),
])
def test_connect_path_follows_postfix(spec: str, chroot: bool, path: str | None) -> None:
    assert connect_path(spec, chroot=chroot, queue_directory="/var/spool/postfix") == path


def test_parse_milters_takes_lists_and_per_milter_settings() -> None:
    assert parse_milters("unix:a.sock, inet:127.0.0.1:8891\tunix:/b.sock") == \
        ["unix:a.sock", "inet:127.0.0.1:8891", "unix:/b.sock"]
    assert parse_milters("{ unix:otpguard/otpguard.sock, default_action = accept }, inet:h:1") == \
        ["unix:otpguard/otpguard.sock", "inet:h:1"]
    assert parse_milters("") == []


def view(*services: Service, action: str = "tempfail") -> PostfixView:
    return PostfixView(config_dir="/etc/postfix", queue_directory="/var/spool/postfix",
                       milter_default_action=action, services=services)


def smtpd(milters: tuple[str, ...], chroot: bool = True, name: str = "smtp/inet") -> Service:
    return Service(name=name, command="smtpd", chroot=chroot, milters=milters, parameter="smtpd_milters")


def test_postfix_problems_explain_the_chroot(config) -> None:
    assert postfix_problems(config, view(smtpd(("unix:otpguard/otpguard.sock",)))) == []
    assert postfix_problems(config, view(smtpd(("unix:/var/spool/postfix/otpguard/otpguard.sock",), chroot=False))) == []
    (problem,) = postfix_problems(config, view(smtpd(("unix:/run/otpguard/otpguard.sock",))))
    assert problem.where == "postfix smtp/inet"
    assert problem.text == ("smtpd_milters has unix:/run/otpguard/otpguard.sock: this service runs chrooted in "
                            "/var/spool/postfix and connects to /var/spool/postfix/run/otpguard/otpguard.sock, but "
                            "otpguard listens on /var/spool/postfix/otpguard/otpguard.sock; "
                            "set smtpd_milters = unix:otpguard/otpguard.sock")


def test_postfix_problems_without_any_otpguard_entry(config) -> None:
    services = (smtpd((), name="smtp/inet"), smtpd(("unix:otpguard/otpguard.sock",), name="submission/inet"),
                Service(name="cleanup/unix", command="cleanup", chroot=True, milters=(), parameter="non_smtpd_milters"))
    problems = postfix_problems(config, view(*services, action="reject"))
    assert [p.line() for p in problems] == [
        "postfix smtp/inet: smtpd_milters = (empty) does not name otpguard "
        "(unix:/var/spool/postfix/otpguard/otpguard.sock); set smtpd_milters = unix:otpguard/otpguard.sock",
        "postfix /etc/postfix: milter_default_action = reject: use tempfail (mail waits while otpguard is down) "
        "or accept (mail passes unfiltered)",
    ]  # a cleanup without milters is the admin's choice (locally submitted mail)


def test_postfix_problems_for_an_inet_socket(config) -> None:
    assert postfix_problems(config, view(smtpd(("inet:127.0.0.1:8891",))), "inet:127.0.0.1:8891") == []
    assert postfix_problems(config, view(smtpd(("inet:127.0.0.1:8891",))), "inet:0.0.0.0:8891") == []
    assert len(postfix_problems(config, view(smtpd(("inet:127.0.0.1:8892",))), "inet:127.0.0.1:8891")) == 1


def test_read_postfix_on_debians_stock_master_cf(tmp_path: Path) -> None:
    if postconf_path() is None or not DEBIAN_MASTER.exists():
        unavailable("Debian's postfix package", "not installed (master.cf missing)")
    shutil.copy(DEBIAN_MASTER, tmp_path / "master.cf")
    (tmp_path / "main.cf").write_text("smtpd_milters = unix:/run/otpguard/otpguard.sock\n"
                                      "non_smtpd_milters = $smtpd_milters\nmilter_default_action = tempfail\n")
    found = read_postfix(str(tmp_path))
    assert found.queue_directory == "/var/spool/postfix" and found.milter_default_action == "tempfail"
    by_name = {s.name: s for s in found.services}
    # Debian's smtpd and cleanup are chrooted; non_smtpd_milters = $smtpd_milters is expanded.
    assert by_name["smtp/inet"].chroot and by_name["cleanup/unix"].chroot
    assert by_name["cleanup/unix"].milters == ("unix:/run/otpguard/otpguard.sock",)
    with (tmp_path / "master.cf").open("a") as fh:
        fh.write("submission inet n - y - - smtpd -o smtpd_milters=unix:otpguard/otpguard.sock\n")
    found = read_postfix(str(tmp_path))
    assert {s.name: s.milters for s in found.services}["submission/inet"] == ("unix:otpguard/otpguard.sock",)


def test_config_problems_shared_with_check_config(config) -> None:
    assert config_problems(config) == []
    slow = replace(config, analysis=replace(config.analysis, time_budget_seconds=5.0))
    assert [p.where for p in config_problems(slow)] == ["analysis.time_budget_seconds"]
    assert config_problems(replace(slow, auth=replace(slow.auth, verify=False))) == []
    bad = replace(config, metrics=replace(config.metrics, listen="mx.example:9469"),
                  auth=replace(config.auth, trusted_authserv_ids=("OTPGUARD",)))
    assert [p.where for p in config_problems(bad, "tcp:1")] == ["metrics.listen", "milter.socket",
                                                                "auth.trusted_authserv_ids"]


def test_the_milter_handshake_tells_a_milter_from_anything_else() -> None:
    # A fake milter answering SMFIC_OPTNEG with version 6, and a server that speaks something else.
    import struct

    def serve(listener: socket.socket, answer: bytes) -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(17)
            conn.sendall(answer)
            try:
                conn.recv(5)  # SMFIC_QUIT from a milter client; nothing from a confused one
            except OSError:
                pass

    for answer, ok in ((struct.pack("!Ic3I", 13, b"O", 6, 0, 0), True), (b"220 smtp.example ESMTP\r\n", False)):
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            t = threading.Thread(target=serve, args=(listener, answer))
            t.start()
            with socket.create_connection(listener.getsockname(), timeout=5) as s:
                if ok:
                    assert milter_handshake(s) == 6
                else:
                    with pytest.raises(ValueError):
                        milter_handshake(s)
            t.join(5)


def test_doctor_exits_2_on_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[general]\nbrands = ["{Path(__file__).parents[1]}/conf/brands/amazon.toml"]\n'
                   '[milter]\non_error = "drop"\n')
    res = subprocess.run([sys.executable, "-m", "otpguard.cli", "doctor", "--config", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "milter.on_error" in res.stderr


@pytest.mark.parametrize("setting, says", [("auto", "analysis workers: {auto}"), ("1", "analysis workers: 1 (in the "
                                                                                  "milter process)"),
                                           ("3", "analysis workers: 3")])
def test_doctor_says_how_many_analysis_workers_serve_would_run(tmp_path: Path, setting: str, says: str) -> None:
    from otpguard.config import MilterConfig
    from otpguard.mta.pool import describe_workers

    cfg = tmp_path / "w.toml"
    value = f'"{setting}"' if setting == "auto" else setting
    cfg.write_text(f'[general]\nbrands = ["{Path(__file__).parents[1]}/conf/brands/amazon.toml"]\n'
                   f'[auth]\nverify = false\n[milter]\nworkers = {value}\n')
    res = subprocess.run([sys.executable, "-m", "otpguard.cli", "doctor", "--config", str(cfg), "--no-dns",
                          "--postfix-config", str(tmp_path / "no-postfix-here")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode in (0, 1), res.stderr  # problems with this host's Postfix are not the point
    want = says.format(auto=describe_workers(MilterConfig(workers="auto")))
    assert f"checked: {want}\n" in res.stdout, res.stdout
