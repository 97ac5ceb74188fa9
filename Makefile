# The README's two commands are a contract: `make run` and `make test` set everything up
# on a fresh Debian machine (Python >= 3.11) and then do their job.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= conf/otpguard.toml
CORPUS ?= ../shared/corpus
.PHONY: run test eval bench fuzz setup setup-test sysdeps sysdeps-test venv clean

# Debian packages (tools/sysdeps.sh): `make run` installs what running needs (a compiler and
# headers for pymilter), `make test` adds the servers the tests start on loopback (postfix,
# dnsmasq-base, redis-server, prometheus for promtool, systemd for systemd-analyze). As root
# only, and only what is missing; test-only services are left stopped and disabled.
setup: sysdeps venv
setup-test: sysdeps-test venv

sysdeps:
	@PYTHON=$(PYTHON) bash tools/sysdeps.sh run

sysdeps-test:
	@PYTHON=$(PYTHON) bash tools/sysdeps.sh test

$(VENV)/.installed: pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

# As root, the shipped socket in Postfix's queue directory is used when Postfix is installed
# (otpguard serve creates /var/spool/postfix/otpguard); otherwise, and for a normal user (the
# queue directory is root's), a socket in var/run of the checkout.
run: setup
	@if [ -z "$(RUN_ARGS)" ] && { [ "$$(id -u)" != 0 ] || [ ! -d /var/spool/postfix ]; }; then mkdir -p var/run; \
	  if [ "$$(id -u)" != 0 ]; then why="not root"; else why="no Postfix queue directory /var/spool/postfix"; fi; \
	  echo "$$why: serving on unix:$(CURDIR)/var/run/otpguard.sock"; \
	  exec $(VENV)/bin/otpguard serve --config $(CONFIG) --socket unix:$(CURDIR)/var/run/otpguard.sock; \
	else exec $(VENV)/bin/otpguard serve --config $(CONFIG) $(RUN_ARGS); fi

test: setup-test
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

eval: setup
	$(PY) bench/eval.py --config $(CONFIG) $(CORPUS)

bench: setup-test
	bash bench/run_all.sh $(PY) $(CONFIG) $(CORPUS)

fuzz: setup
	$(PY) bench/fuzz.py --cases 100000 $(CORPUS)

clean:
	rm -rf $(VENV) build *.egg-info milter/*.egg-info .pytest_cache
