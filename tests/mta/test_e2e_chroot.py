"""End to end, the Debian way: a Postfix whose smtpd runs chrooted in its queue directory, and
otpguard's default socket layout inside that directory (issue 15).

The private instance runs its smtpd listeners with chroot = y (master.cf column 5), so each
smtpd sees the filesystem from the queue directory down, as Debian's does. otpguard serves on
<queue>/otpguard/otpguard.sock, a directory it creates itself (0750, group postfix), like the
shipped default /var/spool/postfix/otpguard/otpguard.sock. Postfix names it relative to the
queue directory (unix:otpguard/otpguard.sock): mail reaches the milter. The old spelling, an
absolute path, is looked up inside the chroot, and every client gets 451 4.7.1 at CONNECT;
`otpguard doctor` names that service and the spelling that works.
"""
from __future__ import annotations

import grp
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from support.postfix import (OTPGUARD, OtpguardServer, PostfixInstance, header, require_postfix, shared_tmpdir,
                             write_test_config)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "admin-guide.md"
CONFIG = {'format = "logfmt"': 'format = "json"', 'clean = []': 'clean = ["tag"]'}


@dataclass
class Chrooted:
    work: Path
    pf: PostfixInstance
    milter: OtpguardServer
    config: Path
    socket_path: Path


@pytest.fixture(scope="module")
def chrooted() -> Iterator[Chrooted]:
    require_postfix()
    work = shared_tmpdir("otpguard-chroot-")
    root = work / "postfix"
    # The listeners are known before the instance exists: the queue directory is root/queue.
    socket_path = root / "queue" / "otpguard" / "otpguard.sock"
    listeners = {"relative": "unix:otpguard/otpguard.sock", "absolute": f"unix:{socket_path}"}
    pf = PostfixInstance.create(listeners, root=root, chroot=True)
    milter = None
    try:
        config = write_test_config(work / "otpguard.toml", socket_spec=f"unix:{socket_path}", changes=CONFIG)
        # otpguard makes its own directory in the queue directory, as it does in /var/spool/postfix.
        milter = OtpguardServer(config=config, socket=f"unix:{socket_path}", log=work / "otpguard.log").start()
        pf.start()
        yield Chrooted(work=work, pf=pf, milter=milter, config=config, socket_path=socket_path)
    finally:
        if milter is not None:
            milter.stop()
        pf.cleanup()
        shutil.rmtree(work, ignore_errors=True)


def wait_logged(pf: PostfixInstance, text: str) -> str:
    """The maillog once it holds text: postlogd(8) writes it after the SMTP reply, not before."""
    pf.wait_for(lambda: text in pf.maillog.read_text(errors="replace"), 20, repr(text))
    return pf.maillog.read_text(errors="replace")


def smtpd_roots(pf: PostfixInstance, port: int) -> set[str]:
    """The root directories (/proc/PID/root) of the smtpd processes serving one listener."""
    roots = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if cmdline and cmdline[0].endswith(b"smtpd") and f"127.0.0.1:{port}".encode() in cmdline:
                roots.add(os.readlink(f"/proc/{pid}/root"))
        except OSError:
            continue
    return roots


def test_socket_directory_is_made_for_postfix(chrooted: Chrooted) -> None:
    directory = chrooted.socket_path.parent
    st = directory.stat()
    assert oct(st.st_mode & 0o777) == "0o750" and grp.getgrgid(st.st_gid).gr_name == "postfix"
    sock = chrooted.socket_path.stat()
    assert oct(sock.st_mode & 0o777) == "0o660" and grp.getgrgid(sock.st_gid).gr_name == "postfix"
    # The milter announces the spelling for main.cf: relative to Postfix's queue directory when
    # its socket is in /var/spool/postfix (here the queue is elsewhere, so it is the path itself).
    assert chrooted.milter.events("listening")[0]["postfix"] == f"smtpd_milters = unix:{chrooted.socket_path}"


def test_mail_reaches_the_milter_through_a_chrooted_smtpd(chrooted: Chrooted) -> None:
    pf = chrooted.pf
    raw = (b"From: Bob <bob@example.net>\r\nTo: user@test.example\r\nSubject: lunch\r\n"
           b"Message-ID: <chroot-1@example.net>\r\n\r\nmarker-chroot-relative\r\n")
    code, reply = pf.send(raw, listener="relative")
    assert code == 250, (reply, pf.log_tail(), chrooted.milter.log.read_text(errors="replace")[-3000:])
    got = pf.wait_delivered(b"marker-chroot-relative")
    assert header(got.raw, "X-OTPGuard-Verdict") == ["clean; score=0"]
    qid = re.search(rb"queued as ([0-9A-Za-z]+)", reply).group(1).decode()
    # The milter's log line is written once Postfix has its answer: wait for it too.
    pf.wait_for(lambda: any(e["queue_id"] == qid for e in chrooted.milter.events("message")), 20, "the log line")
    line = next(e for e in chrooted.milter.events("message") if e["queue_id"] == qid)
    assert line["message_id"] == "<chroot-1@example.net>" and line["rcpts"] == 1
    # The smtpd that handed it over really ran chrooted in the queue directory.
    assert smtpd_roots(pf, pf.listeners["relative"]) == {str(pf.queue_dir)}


def test_an_absolute_socket_path_is_not_found_inside_the_chroot(chrooted: Chrooted) -> None:
    pf = chrooted.pf
    raw = b"From: a@example.net\r\nTo: user@test.example\r\nSubject: x\r\n\r\nmarker-chroot-absolute\r\n"
    code, reply = pf.send(raw, listener="absolute")
    assert (code, reply) == (451, b"4.7.1 Service unavailable - try again later")
    # Postfix 3.7's own words, as the admin guide's troubleshooting table quotes them.
    warning = f"warning: connect to Milter service unix:{chrooted.socket_path}: No such file or directory"
    log = wait_logged(pf, warning)
    assert "NOQUEUE: milter-reject: CONNECT from unknown[127.0.0.1]: 451 4.7.1 Service unavailable - " \
           "try again later; proto=SMTP" in log
    guide = GUIDE.read_text()
    assert "warning: connect to Milter service unix:/run/otpguard/otpguard.sock: No such file or directory" in guide
    assert "451 4.7.1 Service unavailable - try again later" in guide


def doctor(chrooted: Chrooted, confdir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OTPGUARD, "doctor", "--config", str(chrooted.config), "--socket",
                           f"unix:{chrooted.socket_path}", "--postfix-config", str(confdir), "--user", "postfix",
                           "--no-dns", *extra], capture_output=True, text=True, timeout=120)


def test_doctor_names_the_service_that_cannot_reach_the_milter(chrooted: Chrooted) -> None:
    pf = chrooted.pf
    res = doctor(chrooted, pf.confdir)
    problems = [ln for ln in res.stdout.splitlines() if ln.startswith("problem: ")]
    assert res.returncode == 1, res.stdout + res.stderr
    port = pf.listeners["absolute"]
    assert len(problems) == 1, res.stdout
    assert problems[0].startswith(f"problem: postfix 127.0.0.1:{port}/inet: smtpd_milters has unix:{chrooted.socket_path}")
    assert f"runs chrooted in {pf.queue_dir} and connects to {pf.queue_dir}{chrooted.socket_path}" in problems[0]
    assert problems[0].endswith("set smtpd_milters = unix:otpguard/otpguard.sock")

    # Without the misspelt listener: the socket answers the milter handshake as user postfix,
    # chrooted, and the files are readable by the service user: no problem at all.
    good = chrooted.work / "conf-good"
    shutil.copytree(pf.confdir, good)
    master = (good / "master.cf").read_text()
    (good / "master.cf").write_text("\n".join(ln for ln in master.splitlines() if f":{port} " not in ln) + "\n")
    res = doctor(chrooted, good)
    assert res.returncode == 0, res.stdout + res.stderr + chrooted.milter.log.read_text(errors="replace")[-3000:]
    assert "otpguard doctor: no problems found" in res.stdout
    assert f"127.0.0.1:{pf.listeners['relative']}/inet (chroot)" in res.stdout


def test_doctor_reports_what_postfix_and_the_service_user_cannot_do(chrooted: Chrooted) -> None:
    good = chrooted.work / "conf-good2"
    shutil.copytree(chrooted.pf.confdir, good)
    port = chrooted.pf.listeners["absolute"]
    master = (good / "master.cf").read_text()
    (good / "master.cf").write_text("\n".join(ln for ln in master.splitlines() if f":{port} " not in ln) + "\n")
    directory = chrooted.socket_path.parent
    chrooted.config.chmod(0o600)
    os.chmod(directory, 0o700)  # the postfix user can no longer reach the socket
    try:
        res = doctor(chrooted, good)
        # What Postfix itself says meanwhile, as the guide's troubleshooting table quotes it.
        raw = b"From: a@example.net\r\nTo: user@test.example\r\nSubject: x\r\n\r\nmarker-denied\r\n"
        assert chrooted.pf.send(raw, listener="relative")[0] == 451
        warning = "warning: connect to Milter service unix:otpguard/otpguard.sock: Permission denied"
        wait_logged(chrooted.pf, warning)
        assert warning in GUIDE.read_text()
    finally:
        os.chmod(directory, 0o750)
        chrooted.config.chmod(0o644)
    problems = [ln for ln in res.stdout.splitlines() if ln.startswith("problem: ")]
    assert res.returncode == 1
    assert any("as user postfix, chrooted in" in p and "Permission denied" in p for p in problems), problems
    assert any(f"user postfix: cannot read {chrooted.config}: Permission denied" in p for p in problems), problems
    assert len(problems) == 2, problems
