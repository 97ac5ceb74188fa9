# The README's two commands are a contract: `make run` and `make test` set everything up
# on a fresh Debian machine (Python >= 3.11) and then do their job.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= conf/otpguard.toml
CORPUS ?= ../shared/corpus
DEB_PACKAGES := postfix libmilter-dev dnsmasq-base redis-server prometheus systemd gcc

.PHONY: run test eval bench fuzz setup sysdeps venv clean man dist deb debdeps

setup: sysdeps venv

# Debian packages: installed only when something is missing and we are root; as a normal user
# we say what is missing and carry on (the tests that need them say why they cannot run).
sysdeps:
	@missing=""; \
	command -v postconf >/dev/null 2>&1 || [ -x /usr/sbin/postconf ] || missing="$$missing postfix"; \
	[ -f /usr/include/libmilter/mfapi.h ] || missing="$$missing libmilter-dev"; \
	command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || missing="$$missing dnsmasq-base"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v gcc >/dev/null 2>&1 || missing="$$missing gcc"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	$(PYTHON) -c 'import os,sysconfig,sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
	  || missing="$$missing python3-dev"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEB_PACKAGES) \
	    $$(case "$$missing" in *python3-dev*) echo python3-dev python3-venv;; esac) >/dev/null; \
	else \
	  echo "missing Debian packages:$$missing (run 'make setup' as root to install them)" >&2; \
	fi

$(VENV)/.installed: pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

# As root the shipped socket (/run/otpguard) is used; a normal user gets a socket in var/run
# of the checkout, because /run is root's.
run: setup
	@if [ "$$(id -u)" != 0 ] && [ -z "$(RUN_ARGS)" ]; then mkdir -p var/run; \
	  echo "not root: serving on unix:$(CURDIR)/var/run/otpguard.sock"; \
	  exec $(VENV)/bin/otpguard serve --config $(CONFIG) --socket unix:$(CURDIR)/var/run/otpguard.sock; \
	else exec $(VENV)/bin/otpguard serve --config $(CONFIG) $(RUN_ARGS); fi

test: setup
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

eval: setup
	@[ -f "$(CORPUS)/MANIFEST.tsv" ] || { echo "make eval: no corpus at $(CORPUS) (no MANIFEST.tsv there)." >&2; \
	  echo "  The development corpus lives in ../shared/corpus beside the checkout; point CORPUS=DIR at a copy:" >&2; \
	  echo "  make eval CORPUS=~/otpguard-corpus. Your own: a folder of .eml files plus a MANIFEST.tsv with" >&2; \
	  echo "  the columns file and label (phish, legit, ...), and optionally traffic/<name>/ folders." >&2; \
	  echo "  To score a mailbox without labels, use: otpguard scan PATH" >&2; exit 2; }
	$(PY) bench/eval.py --config $(CONFIG) $(CORPUS)

bench: setup
	bash bench/run_all.sh $(PY) $(CONFIG) $(CORPUS)

fuzz: setup
	$(PY) bench/fuzz.py --cases 100000 $(CORPUS)

clean:
	rm -rf $(VENV) build dist *.egg-info milter/*.egg-info .pytest_cache

# Man pages and shell completions are generated from the argument parser and the shipped config
# (tools/gen_docs.py) and committed; tests/test_generated_docs.py fails when they are stale.
man: venv
	$(PY) tools/gen_docs.py

# The wheel and sdist: the wheel carries conf/ as otpguard/defaults (package data).
dist: venv
	rm -f dist/*.whl dist/*.tar.gz && $(PY) -m build --outdir dist .

# The Debian package, built by dpkg-buildpackage (debhelper, dh-python) in build/deb; the .deb
# lands in dist/. debian/build-deb.sh says how; the admin guide (Install) lists what it installs
# and why the lintian overrides are there.
DEB_BUILD_PACKAGES := dpkg-dev debhelper dh-python python3-pip lintian
debdeps:
	@missing=""; for p in $(DEB_BUILD_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "missing Debian packages:$$missing (run 'make debdeps' as root)" >&2; exit 1; fi

deb: debdeps venv
	bash debian/build-deb.sh $(PY)
