"""The commands: ``mcmc-train`` and ``mcmc-sweep`` (:mod:`.main`), the training app
(:mod:`.train_app`), the sweep shorthand (:mod:`.sweep_app`), ``--help`` (:mod:`.help`), the config
reference (:mod:`.reference`) and secrets masked in Hydra's output (:mod:`.masking`)."""
