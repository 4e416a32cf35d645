# Two commands from a fresh clone: `make sweep` runs the default sweep, `make test` the tests.
# Each first creates the virtual environment .venv when it is missing: python3 -m venv, the torch
# pin (the build known to work on our CPUs), then this package with its test extras.
#   make sweep ARGS="hydra.sweeper.n_trials=40"   # arguments for mcmc-sweep (= mcmc-train -m hparams_search=default)
PYTHON ?= python3
VENV ?= .venv
ARGS ?=
BIN := $(VENV)/bin

.PHONY: sweep test setup

sweep: setup
	$(BIN)/mcmc-sweep $(ARGS)

test: setup
	$(BIN)/python -m pytest -q -rs

setup: $(BIN)/mcmc-sweep

# The console script is installed last: its absence means the set-up has not finished.
$(BIN)/mcmc-sweep:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -e '.[test]'
