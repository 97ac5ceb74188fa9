"""rspamd's milter proxy for the benchmarks: Debian's rspamd with its default rules, hermetic.

What differs from the Debian package's own /etc/rspamd/rspamd.conf, and why:
  - the proxy (milter mode, as shipped) and the normal workers listen on free loopback ports,
    not 11332/11333 (other runs may hold those); the controller and fuzzy workers are not
    started (neither takes part in scanning);
  - DNS goes to a dnsmasq on loopback that answers NXDOMAIN for every name (SPF, DKIM, DMARC,
    RBL and SURBL lookups are made and answered at once; nothing leaves the machine);
  - fuzzy_check is off (its servers are on the Internet) and so is rspamd_update (it fetches
    over HTTP); maps with URLs fail to load (their names do not resolve);
  - no Redis (rspamd disables what needs it: Bayes, neural, ratelimit, greylisting, reputation);
  - the database, run and log directories are a temporary directory.
Every other module runs with its default settings, as an admin installing rspamd would have it.

    with RspamdServer(workdir, dns_port=5353) as r:   # r.milter_address == "inet:127.0.0.1:PORT"
        ...
Needs root (rspamd drops to its _rspamd user) and `apt-get install rspamd`.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

RSPAMD = shutil.which("rspamd", path="/usr/bin:/usr/sbin:" + os.environ.get("PATH", ""))
CONFDIR = Path("/etc/rspamd")
USER = "_rspamd"

CONFIG = """\
# Written by bench/rspamd.py: /etc/rspamd/rspamd.conf with loopback ports; the resolver and the
# disabled modules are in override.d/ and local.d/ of LOCAL_CONFDIR, the way an admin sets them.
.include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
    .include(try=true; priority=10) "$LOCAL_CONFDIR/override.d/options.inc"
}}
logging {{
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    .include "$CONFDIR/logging.inc"
}}
worker "normal" {{
    bind_socket = "127.0.0.1:{normal_port}";
    .include "$CONFDIR/worker-normal.inc"
}}
worker "rspamd_proxy" {{
    bind_socket = "127.0.0.1:{proxy_port}";
    # /etc/rspamd/worker-proxy.inc, with the upstream on our normal workers' port
    milter = yes;
    timeout = 120s;
    upstream "local" {{
        default = yes;
        hosts = "127.0.0.1:{normal_port}";
    }}
    count = 1;
    max_retries = 5;
    discard_on_reject = false;
    quarantine_on_reject = false;
    spam_header = "X-Spam";
    reject_message = "Spam message rejected";
}}
"""
# override.d/options.inc: every DNS query goes to the loopback dnsmasq, never /etc/resolv.conf.
DNS_OPTIONS = """\
dns {{
    nameserver = ["127.0.0.1:{dns_port}"];
    timeout = 1s;
    sockets = 16;
    retransmits = 1;
}}
"""
DISABLED_MODULES = ("fuzzy_check", "rspamd_update")


def rspamd_available() -> str | None:
    """None when rspamd can run here, else why not."""
    if RSPAMD is None:
        return "rspamd is not installed (apt-get install rspamd)"
    if os.geteuid() != 0:
        return "rspamd is started as root and drops to its own user"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"no {USER} user (the rspamd package creates it)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RspamdServer:
    """rspamd in the foreground with the configuration above; stop() ends it and its workers."""

    def __init__(self, workdir: Path, *, dns_port: int) -> None:
        self.workdir = workdir
        self.dns_port = dns_port
        self.proxy_port = _free_port()
        self.normal_port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def milter_address(self) -> str:
        return f"inet:127.0.0.1:{self.proxy_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log(self) -> Path:
        return self.workdir / "log" / "rspamd.log"

    def start(self, timeout: float = 60) -> "RspamdServer":
        local = self.workdir / "local"
        (local / "local.d").mkdir(parents=True, exist_ok=True)
        (local / "override.d").mkdir(parents=True, exist_ok=True)
        (local / "override.d" / "options.inc").write_text(DNS_OPTIONS.format(dns_port=self.dns_port))
        for module in DISABLED_MODULES:
            (local / "local.d" / f"{module}.conf").write_text("enabled = false;\n")
        user = pwd.getpwnam(USER)
        for sub in ("db", "run", "log"):
            (self.workdir / sub).mkdir(exist_ok=True)
            os.chown(self.workdir / sub, user.pw_uid, user.pw_gid)
        conf = self.workdir / "rspamd.conf"
        conf.write_text(CONFIG.format(normal_port=self.normal_port, proxy_port=self.proxy_port))
        self.proc = subprocess.Popen(
            [RSPAMD or "rspamd", "-f", "-c", str(conf), "-u", USER, "-g", USER,
             f"--var=CONFDIR={CONFDIR}", f"--var=LOCAL_CONFDIR={local}", f"--var=DBDIR={self.workdir / 'db'}",
             f"--var=RUNDIR={self.workdir / 'run'}", f"--var=LOGDIR={self.workdir / 'log'}"],
            stdout=subprocess.DEVNULL, stderr=(self.workdir / "stderr.log").open("wb"))
        deadline = time.monotonic() + timeout
        while True:
            try:
                for port in (self.proxy_port, self.normal_port):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
                    self.stop()
                    raise RuntimeError(f"rspamd did not start:\n{log}")
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> "RspamdServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
