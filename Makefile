# segscale: every workflow is a make target. `make dev` runs the pipeline locally, `make test` proves it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := 1
export CDK_DISABLE_VERSION_CHECK := 1
export AWS_EC2_METADATA_DISABLED := true

.PHONY: install dev test test-fast lint format synth bench clean

$(PY_STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(PY_STAMP) $(NODE_STAMP)  ## create .venv and node_modules from the pinned files

dev: install  ## run the whole pipeline locally (moto server, API, pipe and scheduler emulators)
	$(BIN)/python -m local.dev

test: install lint  ## lint, then every test (unit, API, worker, CDK, end-to-end)
	$(BIN)/python -m pytest

test-fast: install  ## everything but the slow tests
	$(BIN)/python -m pytest -m "not slow"

lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(PY_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

synth: install  ## synthesize the CloudFormation templates into cdk.out/ (no AWS credentials needed)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" npx cdk synth --quiet

bench: install  ## run the benchmarks, write bench/results/latest.{json,md}, print the table, regenerate docs/cost.md
	$(BIN)/python -m bench
	$(BIN)/python -m bench.cost --write docs/cost.md

clean:
	rm -rf $(VENV) node_modules cdk.out .segscale .pytest_cache .ruff_cache
