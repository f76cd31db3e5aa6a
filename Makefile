# One entry point for a fresh machine: `make dev` runs the local stack, `make test` passes the tests.
# Everything is installed from the package registries into .venv/ and contracts/node_modules/.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NPM_STAMP := contracts/node_modules/.installed
FORGE = $(firstword $(wildcard $(CURDIR)/contracts/node_modules/@foundry-rs/forge-*/bin/forge))
# CI runs the fuzz/invariant profile sized for its budget; `make test-deep` runs the deep one.
FOUNDRY_PROFILE ?= $(if $(CI),ci,default)

.PHONY: dev test test-llm install system-tools abi lint typecheck forge-test pytest bench soak test-deep clean

dev: install
	$(PY) -m oracle dev

test: install lint typecheck forge-test pytest

install: $(PY_STAMP) $(NPM_STAMP)

$(PY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

$(NPM_STAMP): contracts/package.json contracts/package-lock.json
	cd contracts && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

abi: install
	$(PY) contracts/export_abi.py

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy

forge-test: install
	cd contracts && FOUNDRY_PROFILE=$(FOUNDRY_PROFILE) $(FORGE) test
	cd examples/consumer && $(FORGE) test

# The status page is tested in headless Chromium, the metrics and alert rules with promtool: Debian's
# chromium and prometheus packages, installed (as root) when missing.
system-tools:
	@command -v chromium >/dev/null && command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium prometheus >/dev/null; \
	  else echo "the tests need chromium and promtool: apt-get install chromium prometheus" >&2; exit 1; fi; }

pytest: install system-tools
	$(PY) -m pytest -q

bench: install
	$(PY) -m bench

# The full soak (about a quarter of an hour): kills, reorgs, RPC faults, a base-fee jump, hostile requests
# and hostile 402s, counted from outside the daemon; writes bench/results/soak.json. CI runs `--profile ci`.
soak: install
	$(PY) -m soak

# A real model server in the loop: the local-llm extra (llama.cpp's server with SmolLM2), then every result
# type through the daemon to it. llama.cpp is built portable (AVX2): a -march=native build faults on VMs
# whose CPU reports AMX without enabling it. The first install builds it (minutes); pip caches the wheel.
LLM_STAMP := $(VENV)/.installed-llm
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF

$(LLM_STAMP): $(PY_STAMP)
	@command -v cmake >/dev/null && command -v g++ >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq cmake build-essential; \
	  else echo "building llama.cpp needs cmake and a C++ compiler: apt-get install cmake build-essential" >&2; exit 1; fi; }
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install --quiet -e ".[dev,local-llm]"
	touch $@

test-llm: install $(LLM_STAMP)
	$(PY) -m pytest -q tests/llm

test-deep: install
	cd contracts && FOUNDRY_PROFILE=deep $(FORGE) test

clean:
	rm -rf $(VENV) contracts/node_modules contracts/out contracts/cache examples/consumer/out examples/consumer/cache
