# The README's two commands are a contract: `make run` and `make test` set everything up
# on a fresh Debian machine (Python >= 3.11) and then do their job.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= conf/otpguard.toml
CORPUS ?= ../shared/corpus
.PHONY: run test eval bench fuzz mutate setup setup-test sysdeps sysdeps-test venv clean man dist deb debdeps

# Debian packages (tools/sysdeps.sh): `make run` installs what running needs (a compiler and
# headers for pymilter), `make test` adds the servers the tests start on loopback (postfix,
# dnsmasq-base, redis-server, prometheus for promtool, systemd for systemd-analyze) and the
# tools the .deb test builds with (debdeps below). As root only, and only what is missing;
# test-only services are left stopped and disabled.
setup: sysdeps venv
setup-test: sysdeps-test debdeps venv

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
	@[ -f "$(CORPUS)/MANIFEST.tsv" ] || { echo "make eval: no corpus at $(CORPUS) (no MANIFEST.tsv there)." >&2; \
	  echo "  The development corpus lives in ../shared/corpus beside the checkout; point CORPUS=DIR at a copy:" >&2; \
	  echo "  make eval CORPUS=~/otpguard-corpus. Your own: a folder of .eml files plus a MANIFEST.tsv with" >&2; \
	  echo "  the columns file and label (phish, legit, ...), and optionally traffic/<name>/ folders." >&2; \
	  echo "  To score a mailbox without labels, use: otpguard scan PATH" >&2; exit 2; }
	$(PY) bench/eval.py --config $(CONFIG) $(CORPUS)

bench: setup-test
	bash bench/run_all.sh $(PY) $(CONFIG) $(CORPUS)

fuzz: setup
	$(PY) bench/fuzz.py --cases 100000 $(CORPUS)

# Would the verdict tests notice a broken detection? Mutants of the core (bench/mutate.py).
mutate: setup
	$(PY) bench/mutate.py

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
	else echo "missing Debian packages:$$missing (run 'make debdeps' as root)" >&2; fi

deb: debdeps venv
	bash debian/build-deb.sh $(PY)
