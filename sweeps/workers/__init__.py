"""Running a sweep: the launcher (:mod:`.launcher`), its worker processes (:mod:`.supervisor`),
the worker loop (:mod:`.worker`), the trial runner (:mod:`.trial_runner`, a trial's parts in
:mod:`.trial_context`, which trials share a population in :mod:`.population_rules`), Hydra's
job folders (:mod:`.job_folders`), console progress (:mod:`.progress`), where time goes
(:mod:`.timing`)."""
