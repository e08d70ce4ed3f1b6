# Everything a newcomer needs: `make demo` and `make test` set up their own environment.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
export CDK_DISABLE_CLI_TELEMETRY := true
export CDK_DISABLE_VERSION_CHECK := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export AWS_EC2_METADATA_DISABLED := true

.PHONY: help venv node lint typecheck test unit synth demo bench safety clean

help:
	@echo "make demo   - a full key rotation in the local sandbox (ARGS='--servers 5 --users 1 ...')"
	@echo "make test   - lint, type-check and every test, offline"
	@echo "make synth  - synthesize the CDK app into cdk.out/"
	@echo "make safety - the whole fault-injection matrix (docs/safety.md), heavy variants included"
	@echo "make bench  - benchmarks -> docs/benchmarks.md, bench/results.json"

$(STAMP): requirements/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	touch $@

venv: $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

node: $(NODE_STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: $(STAMP) $(NODE_STAMP) lint typecheck
	$(VENV)/bin/pytest -n 2 --dist loadfile $(PYTEST_ARGS)

# The whole safety matrix (docs/safety.md), heavy variants included: about 6-12 minutes on 2 cores.
safety: $(STAMP) $(NODE_STAMP)
	KEYROTATION_SAFETY_SLOW=1 $(VENV)/bin/pytest tests/safety tests/agent/test_agent_atomicity.py -n 2 --dist load $(PYTEST_ARGS)

unit: $(STAMP)
	$(VENV)/bin/pytest tests/unit tests/agent $(PYTEST_ARGS)

synth: $(STAMP) $(NODE_STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH npx --no-install cdk synth --quiet

demo: $(STAMP) $(NODE_STAMP)
	$(PY) -m sandbox demo $(ARGS)

bench: $(STAMP) $(NODE_STAMP)
	$(PY) -m bench $(ARGS)

clean:
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache .sandbox build
