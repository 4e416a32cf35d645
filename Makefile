# Two commands from a fresh clone: `make sweep` runs the default sweep, `make test` the tests.
# Each first creates the virtual environment .venv when it is missing: python3 -m venv, the torch
# pin (the build known to work on our CPUs), then this package with its test extras.
#   make sweep ARGS="hydra.sweeper.n_trials=40"   # arguments for mcmc-sweep (= mcmc-train -m hparams_search=default)
#   make ui                                       # MLflow's UI on ./mlflow.db at http://127.0.0.1:$(PORT)
#   make dashboard                                # optuna-dashboard on the newest sweep, http://127.0.0.1:8080
PYTHON ?= python3
VENV ?= .venv
ARGS ?=
BIN := $(VENV)/bin

PORT ?= 5000
DASHBOARD_PORT ?= 8080
# The newest sweep's storage under outputs/sweeps/ (hydra.sweeper.storage's default).
NEWEST_DB := $(shell ls -t outputs/sweeps/*/optuna.db 2>/dev/null | head -1)
STORAGE ?= $(if $(NEWEST_DB),sqlite:///$(NEWEST_DB))

.PHONY: sweep test setup ui dashboard

sweep: setup
	$(BIN)/mcmc-sweep $(ARGS)

test: setup
	$(BIN)/python -m pytest -q -rs

setup: $(BIN)/mcmc-sweep

# MLflow's UI on the runs logged from this folder (tracking.uri's default).
ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port $(PORT)

# optuna-dashboard on the newest sweep's study (STORAGE=<url> for another).
dashboard: setup
	@[ -n "$(STORAGE)" ] || { echo "error: no sweep in outputs/sweeps/: run make sweep first, or make dashboard STORAGE=<storage url>"; exit 2; }
	$(BIN)/optuna-dashboard --host 127.0.0.1 --port $(DASHBOARD_PORT) $(STORAGE)

# The console script is installed last: its absence means the set-up has not finished.
$(BIN)/mcmc-sweep:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -e '.[test]'
