# Two commands do all the set-up on a fresh machine:
#   make quickstart   create .venv, install, train + evaluate + route the sample data
#   make test         create .venv, install (+ Chromium via apt-get if missing), run the test suite
#   make console      the web console on the quickstart's workspace
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the pinned AWS CDK CLI (package-lock.json) for `npx cdk synth|deploy`; node_modules/ is git-ignored
NODE_STAMP := node_modules/.installed

CHROMIUM ?= /usr/bin/chromium

.PHONY: quickstart console test install system-deps benchmark benchmark-serving clean destroy

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and exactly pinned: a CPU wheel, never the CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP)

# System packages the tests need (Debian): Chromium for the console's browser tests.
# Idempotent: nothing happens when it is already there.
system-deps:
	@if [ ! -x "$(CHROMIUM)" ]; then \
		echo "installing Chromium (apt-get) for the console's browser tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends chromium; \
	fi

quickstart: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/sav-router quickstart --output sav-router-quickstart

# the web console on the quickstart's workspace (asks for a first admin when there is no user yet)
console: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/sav-router console --workspace sav-router-quickstart

test: $(STAMP) $(NODE_STAMP) system-deps
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

benchmark: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/banking77.py

benchmark-serving: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/serving.py --model runs/banking77/model_closed --threads 2 --http-seconds 30 --users 50

# Delete every stack of the deployment (README, "Teardown"): the serving and pipeline stacks' custom resources
# remove the endpoint, its configs and models, the run models and the model package versions first. The data
# (buckets, key) is kept unless the deployment set retainData to false (the DataOnDelete output says which).
# Needs only the deploy requirements: DEPLOY_PYTHON=.venv-deploy/bin/python make destroy. DESTROY_ARGS=--force: no prompt.
DEPLOY_PYTHON ?= $(BIN)/python
destroy: $(NODE_STAMP)
	PATH="$(dir $(abspath $(DEPLOY_PYTHON))):$$PATH" CDK_DISABLE_CLI_TELEMETRY=true npx cdk destroy --all --app "$(DEPLOY_PYTHON) app.py" $(DESTROY_ARGS)

clean:
	rm -rf $(VENV) sav-router-quickstart runs .pytest_cache
