# Two commands do all the set-up on a fresh machine:
#   make quickstart   create .venv, install, train + evaluate + route the sample data
#   make test         create .venv, install, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the pinned AWS CDK CLI (package-lock.json) for `npx cdk synth|deploy`; node_modules/ is git-ignored
NODE_STAMP := node_modules/.installed

.PHONY: quickstart test install benchmark benchmark-serving clean

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

quickstart: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/sav-router quickstart --output sav-router-quickstart

test: $(STAMP) $(NODE_STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

benchmark: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/banking77.py

benchmark-serving: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/serving.py --model runs/banking77/model_closed --threads 2 --http-seconds 30 --users 50

clean:
	rm -rf $(VENV) sav-router-quickstart runs .pytest_cache
