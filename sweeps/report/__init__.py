"""The study report: trials table and best trial (:mod:`.writer`), the plots (:mod:`.plots`:
Optuna's, restyled by :mod:`.style`, and ours, :mod:`.parallel` and :mod:`.curves`, on axes from
:mod:`.scales`), the best trial's config as an experiment and its command (:mod:`.best`)."""
