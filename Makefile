# Two commands from a fresh clone: `make sweep` runs the default sweep, `make test` the tests.
# Each first creates the virtual environment .venv when it is missing: python3 -m venv, the torch
# pin (the build known to work on our CPUs), then this package with its test extras.
#   make sweep ARGS="hydra.sweeper.n_trials=40"   # arguments for mcmc-sweep (= mcmc-train -m hparams_search=default)
#   make ui                                       # MLflow's UI on ./mlflow.db at http://127.0.0.1:$(PORT)
PYTHON ?= python3
VENV ?= .venv
ARGS ?=
BIN := $(VENV)/bin

PORT ?= 5000

.PHONY: sweep test setup ui

sweep: setup
	$(BIN)/mcmc-sweep $(ARGS)

test: setup
	$(BIN)/python -m pytest -q -rs

setup: $(BIN)/mcmc-sweep

# MLflow's UI on the runs logged from this folder (tracking.uri's default).
ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port $(PORT)

# The console script is installed last: its absence means the set-up has not finished.
$(BIN)/mcmc-sweep:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -e '.[test]'
