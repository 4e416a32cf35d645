"""Hydra's entry to the ``mcmc_optuna`` sweeper (``hydra/sweeper=mcmc_optuna``): Hydra loads
plugin classes from the ``hydra_plugins`` namespace package only. The sweeper itself lives in
:mod:`sweeps.sweeper.run`."""
