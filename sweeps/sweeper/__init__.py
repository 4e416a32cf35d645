"""The Hydra sweeper ``mcmc_optuna``: its settings (:mod:`.settings`, ``hydra.sweeper.*``), the
search-space syntax (:mod:`.params`), the checked sweep (:mod:`.config`) and the sweep itself
(:mod:`.run`)."""
