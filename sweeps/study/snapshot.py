"""Many asks or pruning decisions from one read of a study's trials.

Optuna reads every trial of the study for each ask (the sampler's view of the history) and for
each pruning decision (the pruner's), and its RDB storage re-reads every unfinished trial from
the database at each such read. A worker that asks, or prunes, the K trials of a population at
once, with its K trials running, would read O(K²) trials: with hundreds of trials per worker
that is minutes per population (``benchmarks/sweep_throughput.py`` times it).
:func:`snapshot_study` gives a view of the study whose reads come from one read of the storage,
kept up to date with this process's own writes, which all go through to the storage.

Example:

    >>> with snapshot_study(study) as snap:           # doctest: +SKIP
    ...     trials = [snap.study.ask() for _ in range(64)]
"""

from __future__ import annotations

import copy
from collections.abc import Container, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

__all__ = ["SnapshotStorage", "count_live", "prune_decisions", "snapshot_study"]


def _own_copy(trial: FrozenTrial) -> FrozenTrial:
    """A copy whose dicts this snapshot may update without touching the storage's cache."""
    mine = copy.copy(trial)
    mine.params, mine.distributions = dict(trial.params), dict(trial.distributions)
    mine.user_attrs, mine.system_attrs = dict(trial.user_attrs), dict(trial.system_attrs)
    mine.intermediate_values = dict(trial.intermediate_values)
    return mine


class SnapshotStorage:
    """A storage (any :class:`~optuna.storages.BaseStorage`) whose trial reads come from one
    read of ``study_id``'s trials while :attr:`frozen`, updated with the writes made through
    it; every write goes through to ``storage``, and when not frozen every read too.

    Args:
        storage: the study's storage (``study._storage``).
        study_id: the study whose trials are read once.
    """

    def __init__(self, storage: BaseStorage, study_id: int) -> None:
        self._storage, self._study_id = storage, study_id
        self._trials: dict[int, FrozenTrial] = {
            t._trial_id: _own_copy(t) for t in storage.get_all_trials(study_id, deepcopy=False)}
        self._study_ids: dict[str, int] = {}
        self.frozen = True

    def __getattr__(self, name: str) -> Any:  # anything not read from the snapshot
        return getattr(self._storage, name)

    def release(self) -> None:
        """Read and write through to the storage from now on (the snapshot is dropped)."""
        self.frozen = False
        self._trials.clear()

    # -- reads ---------------------------------------------------------------------------------
    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        if not self.frozen or study_id != self._study_id:
            return self._storage.get_all_trials(study_id, deepcopy=deepcopy, states=states)
        trials = [t for t in self._trials.values() if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trial(self, trial_id: int) -> FrozenTrial:
        if not self.frozen:
            return self._storage.get_trial(trial_id)
        if trial_id not in self._trials:
            self._trials[trial_id] = _own_copy(self._storage.get_trial(trial_id))
        return copy.deepcopy(self._trials[trial_id])

    def get_study_id_from_name(self, study_name: str) -> int:
        if study_name not in self._study_ids:  # a study's id never changes
            self._study_ids[study_name] = self._storage.get_study_id_from_name(study_name)
        return self._study_ids[study_name]

    # -- writes: through to the storage, then into the snapshot ------------------------------
    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        trial_id = self._storage.create_new_trial(study_id, template_trial)
        if study_id == self._study_id:
            self._trials[trial_id] = _own_copy(self._storage.get_trial(trial_id))
        return trial_id

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        self._storage.set_trial_param(trial_id, param_name, param_value_internal, distribution)
        if t := self._updated(trial_id):
            t.params[param_name] = distribution.to_external_repr(param_value_internal)
            t.distributions[param_name] = distribution

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        done = self._storage.set_trial_state_values(trial_id, state, values)
        if trial_id in self._trials:  # state, values and times as stored
            self._trials[trial_id] = _own_copy(self._storage.get_trial(trial_id))
        return done

    def set_trial_intermediate_value(self, trial_id: int, step: int,
                                     intermediate_value: float) -> None:
        self._storage.set_trial_intermediate_value(trial_id, step, intermediate_value)
        if t := self._updated(trial_id):
            t.intermediate_values[step] = intermediate_value

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._storage.set_trial_user_attr(trial_id, key, value)
        if t := self._updated(trial_id):
            t.user_attrs[key] = value

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._storage.set_trial_system_attr(trial_id, key, value)
        if t := self._updated(trial_id):
            t.system_attrs[key] = value

    def _updated(self, trial_id: int) -> FrozenTrial | None:
        """A new copy of the snapshot's trial, to update: lists read before keep the trial as
        it was, as a storage's reads do."""
        if trial_id not in self._trials:
            return None
        self._trials[trial_id] = _own_copy(self._trials[trial_id])
        return self._trials[trial_id]


class StudySnapshot:
    """A study over a :class:`SnapshotStorage`: ``study`` (asks, pruners) and ``storage``."""

    def __init__(self, study: optuna.Study) -> None:
        self.storage = SnapshotStorage(study._storage, study._study_id)
        storage: Any = self.storage  # a storage by what it does, not a BaseStorage subclass
        self.study = optuna.Study(study_name=study.study_name, storage=storage,
                                  sampler=study.sampler, pruner=study.pruner)

    def trials(self, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        """The snapshot's trials (not copies: do not change them)."""
        return self.storage.get_all_trials(self.study._study_id, deepcopy=False, states=states)


@contextmanager
def snapshot_study(study: optuna.Study) -> Iterator[StudySnapshot]:
    """A view of ``study`` whose trial reads come from one read of its storage while the block
    runs (see :class:`SnapshotStorage`); after it, the view and the trials it asked read the
    storage as ``study`` does."""
    snap = StudySnapshot(study)
    try:
        yield snap
    finally:
        snap.storage.release()


def prune_decisions(study: optuna.Study, trials: Sequence[optuna.Trial]) -> set[int]:
    """The numbers of those of ``trials`` that the study's pruner prunes now, each decided as
    :meth:`optuna.Trial.should_prune` decides it, all from one read of the study's trials (the
    pruners' own writes, such as successive halving's rung values, are seen by the decisions
    after them, as they would be one by one)."""
    pruned = set()
    with snapshot_study(study) as snap:
        for trial in trials:
            frozen = snap.storage.get_trial(trial._trial_id)
            if snap.study.pruner.prune(snap.study, frozen):
                pruned.add(trial.number)
    return pruned


def count_live(study: optuna.Study) -> int:
    """The study's complete, pruned and running trials, counted by the database in one query
    (no trial is read), or from a read of the trials on another storage."""
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    rdb = getattr(study._storage, "_backend", None)
    if not isinstance(rdb, optuna.storages.RDBStorage):
        return len(study.get_trials(deepcopy=False, states=states))
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(rdb.scoped_session) as session:
        return session.query(models.TrialModel).filter(
            models.TrialModel.study_id == study._study_id,
            models.TrialModel.state.in_(states)).count()
