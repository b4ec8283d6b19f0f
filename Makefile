# btcpipe — `make run` runs the main job, `make test` runs every check. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the tests need: real servers, static checkers, a headless browser for the report, Java for Flink.
APT_PACKAGES := redis-server prometheus prometheus-alertmanager docker-compose chromium openjdk-17-jre-headless
PYTEST_ARGS ?=

.PHONY: run test lint imports typecheck pytest bench fuzz install system-deps clean feast-venv conformance flink-venv
# Feast's pins (pandas 2, redis 7) conflict with ours: it lives in its own venv (tests/integration/test_feast.py
# builds it too when it is missing). `btcpipe feast init` writes a repo for it; docs/SCALE.md.
FEAST_VERSION := 0.67.0
FEAST_VENV := .venv-feast

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[train,ray,dev]'
	@touch $(STAMP)

install: $(STAMP) system-deps

$(FEAST_VENV)/.installed:
	$(PYTHON) -m venv $(FEAST_VENV)
	$(FEAST_VENV)/bin/pip install --quiet 'feast[redis]==$(FEAST_VERSION)'
	@touch $@

feast-venv: $(FEAST_VENV)/.installed

# PyFlink pins numpy 2.1.3, pyarrow 16.1 and pandas 2.2.3 (through apache-beam): the Flink job runs in its own
# venv (Java 17 from system-deps); btcpipe's pure core runs there too. tests/integration/test_flink.py builds it
# when missing; `btcpipe flink` and `btcpipe parity --engine flink` use it. docs/SCALE.md.
FLINK_VERSION := 2.3.0
FLINK_VENV := .venv-flink

$(FLINK_VENV)/.installed:
	$(PYTHON) -m venv $(FLINK_VENV)
	$(FLINK_VENV)/bin/pip install --quiet apache-flink==$(FLINK_VERSION)
	@touch $@

flink-venv: $(FLINK_VENV)/.installed

# Installs the Debian packages that are missing (as root, or with sudo when it is there).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

run: install
	$(BIN)/btcpipe run --preset realistic

lint: $(STAMP)
	$(BIN)/ruff check btcpipe tests bench

# The layers in .importlinter: no import runs back up the flow, the pure core does no IO.
imports: $(STAMP)
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

test: install lint imports typecheck pytest

# The real Binance clients of tests/conformance in their own venv (their pins conflict with ours); the tests
# build it on first use too.
.venv-clients/requirements.txt: tests/conformance/clients-requirements.txt
	rm -rf .venv-clients && $(PYTHON) -m venv .venv-clients
	.venv-clients/bin/pip install --quiet -r tests/conformance/clients-requirements.txt
	cp tests/conformance/clients-requirements.txt .venv-clients/requirements.txt

conformance: install .venv-clients/requirements.txt
	$(BIN)/pytest -n 0 tests/conformance

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

fuzz: install  # every boundary decoder, 100 000 mutated inputs each (about 6 minutes on 2 cores)
	$(BIN)/python bench/fuzz_decoders.py --inputs 100000

clean:
	rm -rf $(VENV) $(FEAST_VENV) $(FLINK_VENV) .venv-clients .mypy_cache .ruff_cache .pytest_cache build *.egg-info
