# segscale: every workflow is a make target. `make dev` runs the pipeline locally, `make test` proves it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# checkov pins older boto3/botocore than requirements.txt, so it lives in a venv of its own (tests/cdk/test_checkov.py)
CHECKOV_VENV := $(VENV)/tools/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := 1
export CDK_DISABLE_VERSION_CHECK := 1
export AWS_EC2_METADATA_DISABLED := true

.PHONY: install checkov browser dev test test-fast lint format synth bench soak images clean

$(PY_STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CHECKOV_STAMP): requirements-checkov.txt
	$(PYTHON) -m venv --clear $(CHECKOV_VENV)  # from scratch: a tool venv left without pip must not stop make test
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet -r requirements-checkov.txt
	touch $@

checkov: $(CHECKOV_STAMP)  ## the checkov scanner the CDK tests run, in .venv/tools/checkov

install: $(PY_STAMP) $(NODE_STAMP) $(CHECKOV_STAMP)  ## create .venv (with checkov's venv) and node_modules from the pinned files

# Headless Chromium for the web console's browser tests (tests/browser): Debian's package, driven by Playwright
# (pinned in requirements-dev.txt) through its executable path, so nothing is downloaded but the package. Installed
# when missing and we are root; otherwise the browser tests skip and say why (and fail under CI=true).
BROWSER_PACKAGES := chromium fonts-dejavu-core
browser:  ## install the system Chromium for the browser tests when it is missing (needs root and apt-get)
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing $(BROWSER_PACKAGES) (Debian packages) for the browser tests ..."; \
	  { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES) >/dev/null; } || \
	  echo "warning: could not install chromium: the browser tests will skip (and fail under CI=true)"; \
	else echo "note: chromium is missing and cannot be installed here (needs root and apt-get):" \
	  "the browser tests will skip (and fail under CI=true)"; fi

dev: install  ## run the whole pipeline locally (moto server, API, pipe and scheduler emulators); WORKERS=N sets max_workers
	$(BIN)/python -m local.dev $(if $(WORKERS),--workers $(WORKERS))

test: install lint browser  ## lint, then every test (unit, API, worker, CDK, end-to-end, browser)
	$(BIN)/python -m pytest

test-fast: install  ## everything but the slow tests
	$(BIN)/python -m pytest -m "not slow"

lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy  # runtime/, stacks/, local/, segscale_cli/ ([tool.mypy] in pyproject.toml)

format: $(PY_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

synth: install  ## synthesize the CloudFormation templates into cdk.out/ (no AWS credentials needed)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" npx cdk synth --quiet

bench: install  ## run the benchmarks, write bench/results/latest.{json,md}, print the table, regenerate docs/cost.md
	$(BIN)/python -m bench
	$(BIN)/python -m bench.cost --write docs/cost.md

images: install  ## optional: build the API, worker and results images with buildah and run each on a read-only root (docs/deploy.md)
	$(BIN)/python -m tools.images

soak: install  ## load test: 10,000 single-image uploads at concurrency 32 through the local stack (many minutes)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) node_modules cdk.out .segscale .pytest_cache .ruff_cache
