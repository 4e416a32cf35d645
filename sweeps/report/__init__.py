"""The study report: trials table and best trial (:mod:`.writer`), Optuna's plots
(:mod:`.plots`), the best config and its command (:mod:`.best`)."""
