# MRM developer entry points. Two matter to users:
#   make demo   install everything and run the whole journey on embedded SQLite
#   make test   install everything and run every check and test
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BUF := node_modules/.bin/buf

.PHONY: chromium docs install test lint typecheck buf-lint buf-breaking proto proto-check proto-release pytest demo bench clean

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(BIN)/.installed node_modules/.installed

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

buf-lint: install
	$(BUF) lint
	$(BUF) format --diff --exit-code

# The wire contract may only grow. proto/release.binpb is the image of proto/ as
# last released (a file in the tree, so it works in any clone: CI's is fresh and
# the repository has no tags). `buf breaking` (FILE rules) fails on any change
# that would break a client built against it. At a release, and only then, run
# `make proto-release` and commit the new image with the release.
buf-breaking: install
	$(BUF) breaking --against proto/release.binpb

proto-release: install
	$(BUF) build -o proto/release.binpb

proto: install
	tools/genproto.sh

proto-check: install
	tools/genproto.sh --check

# The explanation report's browser test renders it in Debian's chromium (CI is a
# fresh Debian 12 machine; we are root there). Skipped when it is installed.
chromium:
	@test -x /usr/bin/chromium || { S=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$S apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$S apt-get install -y -qq chromium; }

pytest: install chromium
	$(BIN)/pytest -q -p no:cacheprovider

test: lint typecheck buf-lint buf-breaking proto-check pytest

docs: install  ## regenerate the README's configuration reference from the code
	$(BIN)/python tools/readme_config.py

demo: install
	tools/demo.sh

bench: install
	$(BIN)/python -m benchmarks.ledger_append
	$(BIN)/python -m benchmarks.ledger_proofs
	$(BIN)/python -m benchmarks.deploy_steps
	$(BIN)/python -m benchmarks.proxy_serving
	MRM_BENCH_PROXY_WORKERS=2 $(BIN)/python -m benchmarks.proxy_serving
	$(BIN)/python -m benchmarks.serving_stacks
	$(BIN)/python -m benchmarks.proxy_breakdown
	$(BIN)/python -m benchmarks.monitor_follow

clean:
	rm -rf $(VENV) node_modules .mrm .mrm-demo
