#!/usr/bin/env bash
# `make bench`: every benchmark in one go, with the machine's description first, so the output
# can be pasted into BENCHMARKS.md as it is. Usage: bench/run_all.sh [PYTHON] [CONFIG] [CORPUS]
# A benchmark that cannot run here (no root for the private Postfix, no dnsmasq) says why and
# the others still run; the exit status is non-zero if any benchmark failed or was skipped.
set -u
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
CONFIG=${2:-conf/otpguard.toml}
CORPUS=${3:-../shared/corpus}
status=0
# As root, run at a higher priority (nice -10; Postfix, otpguard and the load generators
# inherit it): on a shared VM the neighbours then disturb the figures less. It changes no
# ratio in a quiet machine, where nobody else competes for the CPUs.
NICE=()
if [ "$(id -u)" = 0 ]; then NICE=(nice -n -10); fi

section() { printf '\n=== %s ===\n' "$1"; }

run() {  # run NAME CMD...: time it, remember a failure, never stop the others
  local name=$1 t0 rc
  shift
  section "$name"
  t0=$(date +%s)
  "${NICE[@]}" "$@"
  rc=$?
  echo "($name: $(( $(date +%s) - t0 )) s, exit $rc)"
  [ "$rc" -eq 0 ] || status=1
}

section "machine"
echo "date:    $(date -u +%Y-%m-%d)"
echo "CPUs:    $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "memory:  $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
echo "kernel:  $(uname -sr)"
echo "python:  $("$PY" -c 'import sys; print(sys.version.split()[0])')"
echo "postfix: $( (postconf -d mail_version 2>/dev/null || echo 'mail_version = not installed') | cut -d' ' -f3-)"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min averages before the run)"

run "core (analysis only, one process, no DNS)" "$PY" bench/core.py --config "$CONFIG" "$CORPUS"
run "dns (sender authentication, cold vs warm cache)" "$PY" bench/dns.py
run "milter CPU per message, 512-byte messages (milter protocol, no Postfix)" "$PY" bench/milter_cpu.py
run "milter CPU per message, corpus mail (milter protocol, no Postfix)" "$PY" bench/milter_cpu.py \
    --corpus "$CORPUS" --per-connection 10 -n 1200
run "milter capacity: workers = 1 and 2, the hand-off, rspamd (milter protocol, 10 connections, no MTA)" \
    "$PY" bench/milter_load.py --corpus "$CORPUS"
run "the hand-off alone: worker path against in-process, no protocol, no analysis" \
    "$PY" bench/handoff.py --corpus "$CORPUS" -n 10000 --rounds 3
run "postfix (throughput through a private Postfix)" "$PY" bench/postfix.py --corpus "$CORPUS"
run "memory (RSS of otpguard serve)" "$PY" bench/memory.py --corpus "$CORPUS"
exit $status
