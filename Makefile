# Two commands do all set-up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PEERS := .venv-peers
STAMP := $(VENV)/.installed
LATEST := .venv-latest
TOOLS := .venv-tools
UV_VERSION := 0.13.9
UV := $(TOOLS)/bin/uv
LOCK := requirements/lock.txt
CONSTRAINTS := requirements/constraints.txt
# The lock is for this machine kind: CPython 3.11 on x86-64 Linux, torch from /opt/wheels.
UV_COMPILE := $(UV) pip compile --quiet --generate-hashes --no-header --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --find-links /opt/wheels
# `make lock` takes the newest versions the ranges allow; `make lock UPGRADE="--upgrade-package NAME"` moves
# one package and keeps every other pin.
UPGRADE ?= --upgrade
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install system-deps run test test-fast test-latest lock lint bench peers prepare clean

# Exactly the locked versions, each checked against its hash; precog itself is built with the locked
# setuptools (no build isolation, so nothing unlocked is fetched).
define install_locked
	test -x $(1)/bin/python || $(PY) -m venv $(1)
	$(1)/bin/pip install -q --require-hashes --no-deps -r $(2)
	$(1)/bin/pip install -q --no-deps --no-build-isolation -e .
endef

# The lock file $(1) from pyproject.toml's ranges, requirements/*.in and the flags $(2).
define compile_lock
	$(UV_COMPILE) --emit-find-links pyproject.toml requirements/lock.in --extra dev $(2) -o $(1)
	$(UV_COMPILE) --no-deps requirements/no-deps.in $(2) >> $(1)
endef

$(STAMP): $(LOCK) pyproject.toml
	$(call install_locked,$(VENV),$(LOCK))
	touch $(STAMP)

install: $(STAMP)

prepare: install
	$(BIN)/precog model prepare

run: prepare
	$(BIN)/precog up

# System packages the suite drives: Debian's chromium for the dashboard's browser test (never a downloaded
# browser) and redis-server for the tests that start and kill their own Redis.
system-deps:
	@command -v chromium >/dev/null && command -v redis-server >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq chromium redis-server >/dev/null; }

test: install system-deps
	bash .ci/test

$(UV):
	test -x $(TOOLS)/bin/python || $(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q uv==$(UV_VERSION)

lock: $(UV)
	$(call compile_lock,$(LOCK),$(UPGRADE))
	sed -n 's/^\([A-Za-z0-9._-]*==[^ ;]*\).*/\1/p' $(LOCK) | grep -v '^torch==' > $(CONSTRAINTS)

# The suite against the newest versions the ranges allow, in its own venv, so that a breaking release is
# seen before it reaches the lock; prints which pins it moved.
test-latest: $(UV) system-deps
	rm -rf $(LATEST)
	$(PY) -m venv $(LATEST)
	$(call compile_lock,$(LATEST)/lock.txt,--upgrade)
	diff <(grep '==' $(LOCK)) <(grep '==' $(LATEST)/lock.txt) | grep '^[<>]' || echo "the lock is already the newest"
	$(call install_locked,$(LATEST),$(LATEST)/lock.txt)
	BIN=$(LATEST)/bin bash .ci/test

test-fast: install
	$(BIN)/pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install
	@for script in bench/*_bench.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

$(PEERS)/.installed: bench/peers.txt
	test -x $(PEERS)/bin/python || $(PY) -m venv $(PEERS)
	$(PEERS)/bin/pip install -q --upgrade pip
	$(PEERS)/bin/pip install -q torch==2.13.0
	$(PEERS)/bin/pip install -q -r bench/peers.txt
	touch $@

peers: $(PEERS)/.installed

clean:
	rm -rf $(VENV) $(PEERS) $(LATEST) $(TOOLS) var .pytest_cache .mypy_cache .ruff_cache
