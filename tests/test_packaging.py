"""Build and install tests: the wheel by pipx (a fresh venv) with no source tree and no /etc, and the
.deb with dpkg -i into a throw-away root (an overlay of this machine in a private mount
namespace, so the host is never changed), each then running `otpguard --version`,
`check-config`, a scan of the test token and the milter itself."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Iterator

import pytest

from conftest import FIXTURES, ROOT

pytestmark = pytest.mark.integration
TOKEN = FIXTURES / "mail" / "test_token.eml"


def require_root(what: str) -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI requires {what}: it needs root")
    pytest.skip(f"{what} needs root")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the wheel ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """sdist and wheel by `python -m build` (the wheel is built from the sdist)."""
    out = tmp_path_factory.mktemp("dist")
    # PYTHONDONTWRITEBYTECODE makes build_py say "byte-compiling is disabled": not ours to hear.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    res = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    noise = [ln for ln in (res.stdout + res.stderr).splitlines()
             if ("warning" in ln.lower() or "deprecat" in ln.lower()) and "Location 'file:" not in ln]
    assert noise == [], "the build must be free of setuptools warnings (SPDX license, manifest)"
    return out


def test_wheel_and_sdist_carry_the_defaults_and_the_spdx_license(dist: Path) -> None:
    (wheel,) = dist.glob("otpguard-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "otpguard/defaults/otpguard.toml" in names and "otpguard/defaults/brands/amazon.toml" in names
    assert zipfile.ZipFile(wheel).read("otpguard/defaults/otpguard.toml") == (ROOT / "conf" / "otpguard.toml").read_bytes()
    meta = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith("dist-info/METADATA"))
    assert "License-Expression: MIT" in meta and "License-File: LICENSE" in meta
    (sdist,) = dist.glob("otpguard-*.tar.gz")
    members = {m.split("/", 1)[1] for m in tarfile.open(sdist).getnames() if "/" in m}
    for need in ("conf/otpguard.toml", "conf/brands/amazon.toml", "LICENSE", "man/otpguard.1",
                 "man/otpguard.toml.5", "completion/_otpguard", "debian/rules", "tools/gen_docs.py"):
        assert need in members, need


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory) -> Path:
    """`pipx install` of the wheel: a fresh venv with only the wheel and its dependencies."""
    home = tmp_path_factory.mktemp("pipx")
    (wheel,) = dist.glob("otpguard-*.whl")
    env = {**os.environ, "PIPX_HOME": str(home), "PIPX_BIN_DIR": str(home / "bin"),
           "PIPX_MAN_DIR": str(home / "man"), "PIPX_DEFAULT_PYTHON": sys.executable}
    env.pop("VIRTUAL_ENV", None)
    res = subprocess.run([sys.executable, "-m", "pipx", "install", "--pip-args=--disable-pip-version-check",
                          str(wheel)], capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    venv = home / "venvs" / "otpguard"
    assert (home / "bin" / "otpguard").resolve() == (venv / "bin" / "otpguard").resolve()
    return venv


def run_installed(venv: Path, *args: str, cwd: Path, env: dict[str, str] | None = None,
                  timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the venv's otpguard away from the source tree, with no /etc/otpguard visible."""
    argv = [str(venv / "bin" / "otpguard"), *args]
    if Path("/etc/otpguard").exists():  # hide a system config this machine may have
        argv = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs none /etc/otpguard && exec "$@"', "sh", *argv]
    clean = {k: v for k, v in os.environ.items() if k not in ("OTPGUARD_CONFIG", "PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout, env={**clean, **(env or {})})


def test_installed_wheel_works_with_its_packaged_default(installed: Path, tmp_path: Path) -> None:
    site = installed / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    default = site / "otpguard" / "defaults" / "otpguard.toml"
    res = run_installed(installed, "--version", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == "otpguard 0.1.0"
    res = run_installed(installed, "check-config", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"using {default} (the packaged default)" in res.stderr and "OK (brands: amazon" in res.stdout
    shutil.copy(TOKEN, tmp_path / "token.eml")
    res = run_installed(installed, "scan", "--json", "token.eml", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert [s["name"] for s in json.loads(res.stdout)["symbols"]] == ["TEST_PHISH"]


def test_installed_wheel_config_lookup_order(installed: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine.toml"
    site_conf = next(installed.glob("lib/python*/site-packages/otpguard/defaults"))
    mine.write_text((site_conf / "otpguard.toml").read_text().replace(
        'brands = ["brands/amazon.toml"]', f'brands = ["{site_conf}/brands/amazon.toml"]'))
    res = run_installed(installed, "check-config", cwd=tmp_path, env={"OTPGUARD_CONFIG": str(mine)})
    assert res.returncode == 0 and f"using {mine} (from $OTPGUARD_CONFIG)" in res.stderr
    res = run_installed(installed, "check-config", str(mine), cwd=tmp_path, env={"OTPGUARD_CONFIG": "/nonexistent"})
    assert res.returncode == 0 and "using" not in res.stderr  # --config (here the argument) wins
    res = run_installed(installed, "check-config", cwd=tmp_path, env={"OTPGUARD_CONFIG": "/nonexistent.toml"})
    assert res.returncode == 2 and "/nonexistent.toml: cannot read" in res.stderr  # named, never a fallback


def test_installed_wheel_serves_the_milter(installed: Path, tmp_path: Path) -> None:
    sock = tmp_path / "otpguard.sock"
    argv = [str(installed / "bin" / "otpguard"), "serve", "--socket", f"unix:{sock}",
            "--metrics", f"127.0.0.1:{free_port()}"]
    if Path("/etc/otpguard").exists():
        argv = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs none /etc/otpguard && exec "$@"', "sh", *argv]
    log = tmp_path / "serve.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while b"event=listening" not in log.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        text = log.read_text()
        assert 'event=config' in text and 'source="packaged default"' in text
        assert sock.is_socket()
    finally:
        proc.terminate()
        proc.wait(30)


# --- the .deb -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def deb() -> Path:
    """`make deb`: dpkg-buildpackage with debhelper, lintian clean but for explained tags."""
    require_root("the Debian package build (make deb installs its build dependencies)")
    res = subprocess.run(["make", "-s", "deb"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    built = [ln.split(" ", 1)[1] for ln in res.stdout.splitlines() if ln.startswith("built dist/")]
    assert len(built) == 1, res.stdout
    assert "W: " not in res.stdout and "E: " not in res.stdout  # lintian: explained overrides only
    return ROOT / built[0]


def test_deb_contents(deb: Path) -> None:
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    for path in ("./usr/bin/otpguard", "./etc/otpguard/otpguard.toml", "./etc/otpguard/brands/amazon.toml",
                 "./lib/systemd/system/otpguard.service", "./usr/share/man/man1/otpguard.1.gz",
                 "./usr/share/man/man5/otpguard.toml.5.gz", "./usr/share/bash-completion/completions/otpguard",
                 "./usr/share/zsh/vendor-completions/_otpguard", "./usr/share/doc/otpguard/admin-guide.md",
                 "./usr/lib/otpguard/otpguard/cli.py", "./usr/share/otpguard/prometheus/otpguard-rules.yml"):
        assert f" {path}\n" in listing + "\n", path
    assert "__pycache__" not in listing
    control = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True).stdout
    assert "python3-milter" in control and "python3-spf" in control and "postfix" in control
    info = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True, check=True).stdout
    conffiles = subprocess.run(["tar", "-xOf", "-", "./conffiles"], input=info, capture_output=True).stdout.decode()
    assert conffiles.split() == ["/etc/otpguard/brands/amazon.toml", "/etc/otpguard/otpguard.toml"]


@pytest.fixture()
def scratch_root(tmp_path: Path) -> Iterator[Path]:
    """Directories for an overlay of / that is thrown away after the test."""
    require_root("installing the .deb into an overlay root")
    base = Path(shutil.which("mktemp") and subprocess.run(["mktemp", "-d", "/tmp/otpguard-root-XXXXXX"],
                                                          capture_output=True, text=True, check=True).stdout.strip())
    yield base
    shutil.rmtree(base, ignore_errors=True)


INSTALL_SCRIPT = r"""
set -eu
B=$1
mkdir -p $B/upper $B/work $B/root
mount -t overlay overlay -o lowerdir=/,upperdir=$B/upper,workdir=$B/work $B/root
mount -t proc proc $B/root/proc
mount --rbind /dev $B/root/dev
mount -t tmpfs tmpfs $B/root/tmp
mount -t tmpfs tmpfs $B/root/run
mount -t tmpfs tmpfs $B/root/var/spool/postfix 2>/dev/null || true
cp "$2" $B/root/tmp/otpguard.deb
cp "$3" $B/root/tmp/token.eml
cp "$5" $B/root/tmp/qr.eml
exec chroot $B/root /bin/bash -eu -c '
  export DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin
  # A clean root for otpguard: none of it there before (this machine may have tried it by hand).
  dpkg -P otpguard >/dev/null 2>&1 || true; rm -rf /etc/otpguard /usr/lib/otpguard
  echo "== deps"
  deps=$(dpkg-deb -f /tmp/otpguard.deb Depends | tr "," "\n" | sed -E "s/\(.*\)//; s/\|.*//; s/:any//" | tr -d " ")
  # The package lists of this machine first; fresh ones (in the overlay only) if they are stale.
  apt-get -y -qq install --no-install-recommends $deps >/dev/null 2>&1 \
    || { apt-get -qq update >/dev/null && apt-get -y -qq install --no-install-recommends $deps >/dev/null; }
  echo "== dpkg -i"
  dpkg -i /tmp/otpguard.deb
  echo "== version"; otpguard --version
  echo "== check-config"; otpguard check-config
  echo "== user"; id otpguard
  echo "== spool"; stat -c "%U:%G %a" /var/spool/postfix/otpguard
  echo "== etc"; stat -c "%U:%G %a" /etc/otpguard/otpguard.toml
  echo "== scan"; otpguard scan --json /tmp/token.eml || echo "scan-exit=$?"
  echo "== qr"; otpguard scan --json /tmp/qr.eml || true
  echo "== serve"
  # As the unit runs it: user otpguard with the supplementary groups postfix and postdrop.
  runuser -u otpguard -g otpguard -G postfix -G postdrop -- otpguard serve --metrics 127.0.0.1:'$4' 2>/tmp/serve.log & pid=$!
  for i in $(seq 1 300); do grep -q event=listening /tmp/serve.log && break; sleep 0.1; done
  cat /tmp/serve.log; stat -c "%U:%G %a %F" /var/spool/postfix/otpguard/otpguard.sock
  kill $pid; wait $pid || true
  echo "== remove"; dpkg -r otpguard >/dev/null; test ! -e /usr/bin/otpguard && test -e /etc/otpguard/otpguard.toml && echo removed-keeps-conffiles
  echo "== purge"; dpkg -P otpguard >/dev/null; test ! -e /etc/otpguard && test ! -e /var/spool/postfix/otpguard && echo purged
'
"""


def _qr_mail(path: Path) -> Path:
    """A brand claim whose only link is in a QR code: decoded by Debian's Pillow and the bundled zxing-cpp."""
    import base64
    import io

    import zxingcpp
    from PIL import Image

    img = zxingcpp.write_barcode_to_image(zxingcpp.create_barcode("https://qr-login-check.top/verify",
                                                                  zxingcpp.BarcodeFormat.QRCode), scale=4)
    height, width = memoryview(img).shape
    png = io.BytesIO()
    Image.frombytes("L", (width, height), bytes(memoryview(img))).save(png, "PNG")
    b64 = base64.encodebytes(png.getvalue()).decode()
    path.write_bytes((
        "From: \"Amazon\" <no-reply@account-notice-center.top>\r\nSubject: Scan to verify\r\n"
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
        "Your Amazon account has been locked. Scan the code with your phone to verify your account.\r\n"
        "--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        f"{b64}\r\n--b--\r\n").encode())
    return path


def test_deb_installs_with_dpkg_and_runs(deb: Path, scratch_root: Path, tmp_path: Path) -> None:
    res = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", INSTALL_SCRIPT, "install",
                          str(scratch_root), str(deb), str(TOKEN), str(free_port()),
                          str(_qr_mail(tmp_path / "qr.eml"))],
                         capture_output=True, text=True, timeout=600)
    out = res.stdout
    assert res.returncode == 0, out[-4000:] + res.stderr[-4000:]
    section = {}
    for block in out.split("== ")[1:]:
        name, _, body = block.partition("\n")
        section[name.strip()] = body.strip()
    assert section["version"] == "otpguard 0.1.0"
    assert section["check-config"] == ("/etc/otpguard/otpguard.toml: OK (brands: amazon; "
                                       "socket unix:/var/spool/postfix/otpguard/otpguard.sock; "
                                       "allow 0, deny 0 list entries)")
    assert "(otpguard)" in section["user"]
    assert section["spool"] == "otpguard:postfix 750"
    assert section["etc"] == "root:otpguard 640"
    scan, _, status = section["scan"].rpartition("\n")
    assert status == "scan-exit=1" and [s["name"] for s in json.loads(scan)["symbols"]] == ["TEST_PHISH"]
    qr_reasons = [s["reason"] for s in json.loads(section["qr"])["symbols"]]
    assert any("qr-login-check.top" in r for r in qr_reasons), qr_reasons  # Debian's python3-pil decodes it
    assert 'source=system' in section["serve"] and "event=listening" in section["serve"]
    assert section["serve"].endswith("otpguard:postfix 660 socket")
    assert section["remove"] == "removed-keeps-conffiles"
    assert section["purge"] == "purged"
