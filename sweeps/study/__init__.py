"""The Optuna study: trial accounting and recovery, sampler, pruner and storage (:mod:`.trials`),
stores made whole (:mod:`.stores`), the search space (:mod:`.space`), a population's reads and
writes in one go (:mod:`.snapshot`, :mod:`.batch_writes`: they rely on Optuna's internals),
database outages waited out (:mod:`.outage`), this host (:mod:`.hosts`)."""
