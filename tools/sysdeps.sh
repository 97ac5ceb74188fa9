#!/usr/bin/env bash
# Debian packages for `make run` (what running the milter needs) and `make test` (plus the real
# servers the tests start on loopback). Installed only when something is missing and we are
# root; as a normal user we say what is missing and carry on.
#
#   tools/sysdeps.sh run    compiler and headers to build pymilter: gcc, libmilter-dev, python3-dev
#   tools/sysdeps.sh test   the above, and postfix, dnsmasq-base, redis-server, prometheus (promtool),
#                           systemd (systemd-analyze)
#
# Test-only services never run as system services because of this script: nothing is started
# while installing (policy-rc.d, invoke-rc.d(8)), then redis-server and prometheus are disabled,
# and Debian's Prometheus, should anyone enable it, listens on loopback only (its default is all
# interfaces, :9090). Postfix is installed with "No configuration": the tests run private
# instances with their own main.cf, and a system Postfix without a main.cf stays stopped.
set -euo pipefail

want=${1:?usage: $0 run|test}
PYTHON=${PYTHON:-python3}

missing=()
need() { missing+=("$@"); }
have_python_headers() {
  "$PYTHON" -c 'import os,sysconfig,sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'
}

command -v gcc >/dev/null 2>&1 || need gcc
[ -f /usr/include/libmilter/mfapi.h ] || need libmilter-dev
have_python_headers || need python3-dev python3-venv
if [ "$want" = test ]; then
  command -v postconf >/dev/null 2>&1 || [ -x /usr/sbin/postconf ] || need postfix
  command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need dnsmasq-base
  command -v redis-server >/dev/null 2>&1 || need redis-server
  command -v promtool >/dev/null 2>&1 || need prometheus
  command -v systemd-analyze >/dev/null 2>&1 || need systemd
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run 'make setup' as root to install them)" >&2
  exit 0
fi

echo "installing Debian packages: ${missing[*]}"
# Keep maintainer scripts from starting services (invoke-rc.d and deb-systemd-invoke honour
# policy-rc.d); ours is removed afterwards, an existing one is left alone.
own_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 0755 /usr/sbin/policy-rc.d
  own_policy=1
fi
cleanup() { [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d; }
trap cleanup EXIT

apt-get update -qq
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

for pkg in "${missing[@]}"; do
  case "$pkg" in
    prometheus)
      # promtool is all the tests need; the server must not listen on every interface.
      if [ -f /etc/default/prometheus ] && grep -q '^ARGS=""' /etc/default/prometheus; then
        sed -i 's|^ARGS=""|ARGS="--web.listen-address=127.0.0.1:9090"|' /etc/default/prometheus
      fi
      service=prometheus ;;
    redis-server) service=redis-server ;;
    *) continue ;;
  esac
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now "$service" >/dev/null 2>&1 || true
  elif command -v update-rc.d >/dev/null 2>&1; then
    update-rc.d "$service" disable >/dev/null 2>&1 || true
  fi
done
