"""The sweep orchestrator around :mod:`mcmc_core`: Hydra configs, Optuna studies, MLflow runs.

Subpackages, in the order a sweep passes through them:

- :mod:`sweeps.cli`: the commands (``mcmc-train``, its shorthand ``mcmc-sweep``), ``--help``,
  the config reference, secrets masked in Hydra's output.
- :mod:`sweeps.sweeper`: the Hydra sweeper (``hydra/sweeper=mcmc_optuna``): its settings
  (``hydra.sweeper.*``), the search-space syntax, the checked sweep.
- :mod:`sweeps.checks`: the start-up check of configs and services, a full disk.
- :mod:`sweeps.study`: the Optuna study: storage made whole, trial accounting and recovery,
  the search space, batched reads and writes, outages of the database.
- :mod:`sweeps.workers`: the launcher, its worker processes, the worker loop, the trial runner.
- :mod:`sweeps.tracking`: every MLflow write: a trial's run, the sweep's parent run, outages.
- :mod:`sweeps.report`: the report (plots, trials table, best config and command).
"""
