"""Every MLflow write: a training run (:mod:`.mlflow_run`), a trial's run through the client
(:mod:`.client_run`), the sweep's parent run (:mod:`.parent_run`), a basic multirun
(:mod:`.multirun`), server outages waited out (:mod:`.outage`)."""
