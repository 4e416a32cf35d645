"""Units of the sweep driver: trial accounting (``is_surplus``), the search space, samplers and
pruners by name, and the retry of trials whose process died (real SQLite Optuna storage)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from sweeps.study.batch_writes import heartbeat_ids
from sweeps.sweeper.config import ParamSpec
from sweeps.sweeper.settings import PRUNERS, SAMPLERS, McmcOptunaSweeperConf
from sweeps.study.space import SearchSpace
from sweeps.study.trials import (
    count_trials,
    fail_dead_trials,
    fail_unowned_trials,
    is_surplus,
    make_pruner,
    make_sampler,
    open_storage,
    open_study,
    pruning_note,
    recover_trials,
    requeue,
    retry_key,
    worker_seed,
)

pytestmark = [pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
              pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")]

T0 = dt.datetime(2026, 1, 1, 12, 0, 0)


def frozen(number: int, state: TrialState, start: float | None = 0.0) -> FrozenTrial:
    """A stored trial: ``start`` seconds after T0 (None: never started)."""
    done = state.is_finished()
    return FrozenTrial(
        number=number, state=state, value=0.5 if state == TrialState.COMPLETE else None,
        datetime_start=None if start is None else T0 + dt.timedelta(seconds=start),
        datetime_complete=T0 + dt.timedelta(seconds=100) if done else None, params={},
        distributions={}, user_attrs={}, system_attrs={}, intermediate_values={},
        trial_id=number + 1)


# -- is_surplus -----------------------------------------------------------------------------------

def test_not_surplus_while_slots_are_left() -> None:
    done = [frozen(0, TrialState.COMPLETE), frozen(1, TrialState.PRUNED)]
    mine = frozen(2, TrialState.RUNNING, start=10)
    assert not is_surplus([*done, mine], mine, n_trials=3)
    other = frozen(3, TrialState.RUNNING, start=5)
    assert not is_surplus([*done, other, mine], mine, n_trials=4)


def test_surplus_when_the_study_is_full() -> None:
    done = [frozen(i, TrialState.COMPLETE) for i in range(3)]
    mine = frozen(3, TrialState.RUNNING, start=10)
    assert is_surplus([*done, mine], mine, n_trials=3)
    assert is_surplus([*done, mine], mine, n_trials=2)


def test_failed_and_waiting_trials_do_not_count() -> None:
    others = [frozen(0, TrialState.COMPLETE), frozen(1, TrialState.FAIL),
              frozen(2, TrialState.FAIL), frozen(3, TrialState.WAITING, start=None)]
    mine = frozen(4, TrialState.RUNNING, start=10)
    assert not is_surplus([*others, mine], mine, n_trials=2)


def test_of_two_asks_for_the_last_slot_the_later_one_gives_way() -> None:
    done = [frozen(i, TrialState.COMPLETE) for i in range(3)]
    early, late = frozen(3, TrialState.RUNNING, start=10), frozen(4, TrialState.RUNNING, start=11)
    trials = [*done, early, late]
    assert not is_surplus(trials, early, n_trials=4)
    assert is_surplus(trials, late, n_trials=4)
    # With room for both, neither gives way.
    assert not is_surplus(trials, early, n_trials=5)
    assert not is_surplus(trials, late, n_trials=5)


def test_same_start_time_is_ranked_by_number() -> None:
    done = [frozen(0, TrialState.COMPLETE)]
    a, b = frozen(1, TrialState.RUNNING, start=10), frozen(2, TrialState.RUNNING, start=10)
    trials = [*done, a, b]
    assert [is_surplus(trials, t, n_trials=2) for t in (a, b)] == [False, True]


@pytest.mark.parametrize("n_trials", [1, 2, 3, 4, 5, 6])
def test_concurrent_asks_never_overshoot(n_trials: int) -> None:
    """Every worker ranks the same stored trials alike: exactly the slots left are kept."""
    done = [frozen(0, TrialState.COMPLETE), frozen(1, TrialState.PRUNED)]
    running = [frozen(2 + i, TrialState.RUNNING, start=s) for i, s in enumerate((3, 1, 3, 2))]
    trials = [*done, *running]
    kept = [t for t in running if not is_surplus(trials, t, n_trials)]
    assert len(kept) == max(0, min(len(running), n_trials - len(done)))
    order = sorted(running, key=lambda t: (t.datetime_start, t.number))
    assert {t.number for t in kept} == {t.number for t in order[:len(kept)]}  # the earliest


def test_count_trials() -> None:
    trials = [frozen(0, TrialState.COMPLETE), frozen(1, TrialState.PRUNED),
              frozen(2, TrialState.FAIL), frozen(3, TrialState.RUNNING),
              frozen(4, TrialState.WAITING, start=None), frozen(5, TrialState.COMPLETE)]
    counts = count_trials(trials)
    assert (counts.complete, counts.pruned, counts.failed, counts.running, counts.waiting) == (
        2, 1, 1, 1, 1)
    assert counts.finished == 3


# -- SearchSpace ----------------------------------------------------------------------------------

SPECS = {
    "temperature": ParamSpec(key="sampler.temperature", type="float", low=1e-5, high=1e-2,
                             log=True),
    "cooling_rate": ParamSpec(key="schedule.cooling_rate", type="float", low=0.99, high=0.999,
                              step=0.001),
    "batch": ParamSpec(key="sampler.batch_size", type="int", low=16, high=64, step=16),
    "hidden": ParamSpec(key="model.hidden", type="categorical", choices=[[], [64], [128, 64]]),
    "energy": ParamSpec(key="sampler.energy", type="categorical", choices=["full", "minibatch"]),
    "model": ParamSpec(key="model", type="categorical", choices=["mlp", "cnn"]),
}
GROUPS = {"model": {"mlp": {"name": "mlp", "hidden": [], "output_scale": 4.0},
                    "cnn": {"name": "cnn", "channels": [32, 64], "output_scale": 4.0}}}
BASE = {"model": {"name": "mlp", "hidden": [], "output_scale": 4.0},
        "sampler": {"temperature": 1e-3, "batch_size": 32, "energy": "full"},
        "schedule": {"name": "exponential", "cooling_rate": 0.995}}


def test_distributions() -> None:
    dists = SearchSpace(SPECS, GROUPS).distributions()
    assert dists["temperature"] == FloatDistribution(1e-5, 1e-2, log=True)
    assert dists["cooling_rate"] == FloatDistribution(0.99, 0.999, step=0.001)
    assert dists["batch"] == IntDistribution(16, 64, step=16)
    # Lists are not Optuna choices: they are stored as JSON strings.
    assert dists["hidden"] == CategoricalDistribution(["[]", "[64]", "[128, 64]"])
    assert dists["energy"] == CategoricalDistribution(["full", "minibatch"])
    assert dists["model"] == CategoricalDistribution(["mlp", "cnn"])


def test_suggest_decodes_list_choices() -> None:
    space = SearchSpace(SPECS, GROUPS)
    fixed = optuna.trial.FixedTrial({"temperature": 1e-3, "cooling_rate": 0.995, "batch": 48,
                                     "hidden": "[128, 64]", "energy": "minibatch",
                                     "model": "cnn"})
    values = space.suggest(fixed)
    assert values == {"temperature": 1e-3, "cooling_rate": 0.995, "batch": 48,
                      "hidden": [128, 64], "energy": "minibatch", "model": "cnn"}
    assert space.decode({"hidden": "[]"}) == {"hidden": []}
    assert space.decode({"energy": "full"}) == {"energy": "full"}


def test_suggest_samples_inside_the_space() -> None:
    space = SearchSpace(SPECS, GROUPS)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        values = space.suggest(study.ask())
        assert 1e-5 <= values["temperature"] <= 1e-2
        assert values["batch"] in (16, 32, 48, 64)
        assert values["hidden"] in ([], [64], [128, 64])
        assert values["model"] in ("mlp", "cnn")


def test_apply_sets_dotted_keys_and_swaps_groups() -> None:
    space = SearchSpace(SPECS, GROUPS)
    base = OmegaConf.create(BASE)
    cfg = space.apply(base, {"temperature": 0.004, "batch": 64, "hidden": [128, 64],
                             "model": "cnn", "energy": "minibatch"})
    plain = OmegaConf.to_container(cfg)
    assert plain["sampler"] == {"temperature": 0.004, "batch_size": 64, "energy": "minibatch"}
    # The composed group option replaces the whole model, then the dotted keys apply on it
    # (whatever the order of the entries).
    assert plain["model"] == {"name": "cnn", "channels": [32, 64], "output_scale": 4.0,
                              "hidden": [128, 64]}
    assert plain["schedule"] == BASE["schedule"]
    assert OmegaConf.to_container(base) == BASE  # the base config is not modified


def test_apply_group_choice_replaces_the_whole_group() -> None:
    space = SearchSpace({"model": SPECS["model"]}, GROUPS)
    cfg = OmegaConf.to_container(space.apply(OmegaConf.create(BASE), {"model": "cnn"}))
    assert cfg["model"] == GROUPS["model"]["cnn"]
    assert "hidden" not in cfg["model"]


def test_apply_unknown_group_option_is_an_error() -> None:
    space = SearchSpace({"model": SPECS["model"]}, GROUPS)
    with pytest.raises(KeyError, match="no composed option 'resnet18' for group model"):
        space.apply(OmegaConf.create(BASE), {"model": "resnet18"})


def test_bounds_cover_every_bound_and_choice() -> None:
    space = SearchSpace({k: SPECS[k] for k in ("temperature", "hidden")})
    assert space.bounds() == [
        ("hydra.sweeper.params.sampler.temperature.low", {"temperature": 1e-5}),
        ("hydra.sweeper.params.sampler.temperature.high", {"temperature": 1e-2}),
        ("hydra.sweeper.params.model.hidden.choices", {"hidden": []}),
        ("hydra.sweeper.params.model.hidden.choices", {"hidden": [64]}),
        ("hydra.sweeper.params.model.hidden.choices", {"hidden": [128, 64]}),
    ]


def test_group_keys_and_composed_options() -> None:
    space = SearchSpace(SPECS, GROUPS)
    assert space.group_keys() == {"model": ["mlp", "cnn"]}
    calls = []

    def compose(overrides: list[str]):
        calls.append(overrides)
        return OmegaConf.create({"model": {"name": overrides[0].split("=")[1]}})

    options = SearchSpace.compose_group_options(SPECS, compose)
    assert calls == [["model=mlp"], ["model=cnn"]]
    assert options == {"model": {"mlp": {"name": "mlp"}, "cnn": {"name": "cnn"}}}


# -- samplers and pruners -------------------------------------------------------------------------

SAMPLER_TYPES = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
                 "cmaes": optuna.samplers.CmaEsSampler, "gp": optuna.samplers.GPSampler,
                 "qmc": optuna.samplers.QMCSampler}
PRUNER_TYPES = {"median": optuna.pruners.MedianPruner, "hyperband": optuna.pruners.HyperbandPruner,
                "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
                "wilcoxon": optuna.pruners.WilcoxonPruner, "none": optuna.pruners.NopPruner}


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_name_builds_and_samples(name: str) -> None:
    sampler = make_sampler(McmcOptunaSweeperConf(sampler=name, seed=3), seed=4)
    assert isinstance(sampler, SAMPLER_TYPES[name])
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0) ** 2, n_trials=3)
    assert len(study.trials) == 3


def test_samplers_are_seeded_per_launch_and_worker() -> None:
    cfg = McmcOptunaSweeperConf(sampler="random")

    def first(launch: int, worker: int) -> float:
        study = optuna.create_study(sampler=make_sampler(cfg, worker_seed(cfg, launch, worker)))
        return study.ask().suggest_float("x", 0.0, 1.0)

    assert first(0, 0) == first(0, 0)  # a launch is reproducible
    assert len({first(0, 0), first(0, 1), first(1, 0), first(1, 1)}) == 4
    # The same on any machine: the seed depends on the study's launch number, not the host.
    assert worker_seed(cfg, 0, 0) == 3905563605


def test_launchers_started_together_draw_different_launch_numbers(tmp_path) -> None:
    """Four launchers of one study at the same moment (threads here, processes on one host or
    several machines in a sweep) each draw their own launch number, hence sampler seeds."""
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from sweeps.workers.launcher import next_launch

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    cfg = McmcOptunaSweeperConf()
    open_study(open_storage(url, cfg), "launches", cfg, create=True)
    plan = SimpleNamespace(storage_url=url, name="launches")

    def draw(_: int) -> int:
        return next_launch(plan, open_study(open_storage(url, cfg), "launches", cfg))

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(draw, range(4))) == [0, 1, 2, 3]


@pytest.mark.parametrize("name", PRUNERS)
def test_every_pruner_name_builds(name: str) -> None:
    pruner = make_pruner(McmcOptunaSweeperConf(pruner=name))
    assert isinstance(pruner, PRUNER_TYPES[name])
    study = optuna.create_study(pruner=pruner)
    trial = study.ask()
    trial.report(0.5, 1)
    assert trial.should_prune() in (True, False)


def test_pruning_note_while_the_median_pruner_cannot_prune_populations() -> None:
    cfg = McmcOptunaSweeperConf(pruner="median", population=16)
    study = optuna.create_study(direction="maximize", pruner=make_pruner(cfg))
    running = [study.ask() for _ in range(5)]
    for step in range(1, 11):  # a lockstep wave: every trial reports each epoch
        for i, trial in enumerate(running):
            trial.report(0.9 if i else 0.1, step)
    assert not running[0].should_prune()  # hopeless, but nothing complete to compare with
    note = pruning_note(cfg, complete=0)
    assert note is not None and "4 needed, 0 so far" in note and "successive_halving" in note
    for trial in running[1:]:
        study.tell(trial, 0.9)
    assert running[0].should_prune()  # four complete trials: the median pruner prunes
    assert pruning_note(cfg, complete=4) is None
    assert pruning_note(McmcOptunaSweeperConf(pruner="median", population=1), complete=0) is None
    assert pruning_note(McmcOptunaSweeperConf(pruner="successive_halving", population=16),
                        0) is None


def test_unknown_sampler_or_pruner_is_an_error() -> None:
    with pytest.raises(ValueError, match="hydra.sweeper.sampler='nope'"):
        make_sampler(McmcOptunaSweeperConf(sampler="nope"))
    with pytest.raises(ValueError, match="hydra.sweeper.pruner='nope'"):
        make_pruner(McmcOptunaSweeperConf(pruner="nope"))


# -- retries of trials whose process died ---------------------------------------------------------

def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def study(tmp_path):
    """A study on a real SQLite storage with the sweep's retry hook, recording retried trials."""
    cfg = McmcOptunaSweeperConf(max_retries=2)
    retried: list[int] = []
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", cfg,
                           on_retry=lambda t: retried.append(t.number))
    s = open_study(storage, "units", cfg, create=True)
    s.retried = retried
    return s


def start_trial(study, pid: int, params: float = 0.25):
    """A RUNNING trial of worker process ``pid`` on this host, as a worker leaves it."""
    trial = study.ask()
    study._storage.set_trial_param(trial._trial_id, "x", params, FloatDistribution(0.0, 1.0))
    for key, value in (("host", socket.gethostname()), ("pid", pid), ("session", "old"),
                       ("mlflow_run_id", "run-a")):
        trial.set_user_attr(key, value)
    return trial


def test_dead_worker_trial_is_failed_and_retried_with_same_params(study) -> None:
    killed = start_trial(study, dead_pid())
    alive = start_trial(study, os.getpid(), params=0.75)
    assert fail_dead_trials(study) == [killed.number]
    trials = study.get_trials()
    assert trials[killed.number].state == TrialState.FAIL
    assert trials[alive.number].state == TrialState.RUNNING
    retry = [t for t in trials if t.state == TrialState.WAITING]
    assert len(retry) == 1
    assert retry[0].params == {"x": 0.25}
    assert retry[0].system_attrs["failed_trial"] == killed.number
    assert retry[0].system_attrs["retry_history"] == [killed.number]
    assert retry_key(retry[0]) == killed.number
    assert retry[0].user_attrs["mlflow_run_id"] == "run-a"  # the retry links to the old run
    assert study.retried == [killed.number]
    assert fail_dead_trials(study) == []  # nothing more to do


def test_a_popped_retry_is_not_mistaken_for_the_dead_trial(study) -> None:
    """A worker pops the retry (RUNNING again) and, before it records its own process, another
    worker looks for dead trials: the retry must not be failed again for its predecessor's pid."""
    killed = start_trial(study, dead_pid())
    fail_dead_trials(study)
    popped = study.ask()  # pops the queued retry
    assert popped.number != killed.number and popped.params == {"x": 0.25}
    assert fail_dead_trials(study) == []
    assert study._storage.get_trial(popped._trial_id).state == TrialState.RUNNING
    assert study.retried == [killed.number]


def test_retries_stop_after_max_retries(study) -> None:
    first = start_trial(study, dead_pid())
    fail_dead_trials(study)
    for _ in range(2):  # hydra.sweeper.max_retries=2: each retry dies too
        retry = study.ask()
        assert retry.params == {"x": 0.25}
        for key, value in (("host", socket.gethostname()), ("pid", dead_pid())):
            retry.set_user_attr(key, value)
        assert fail_dead_trials(study) == [retry.number]
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 3  # the first and 2 retries
    assert trials[-1].system_attrs["retry_history"] == [first.number, 1]
    assert study.retried == [0, 1, 2]


def test_requeue_queues_an_interrupted_trial(study) -> None:
    trial = start_trial(study, os.getpid())
    trial.set_user_attr("interrupted", True)
    study.tell(trial, state=TrialState.FAIL)
    requeue(study, study._storage.get_trial(trial._trial_id))
    retry = study.get_trials(states=(TrialState.WAITING,))
    assert len(retry) == 1 and retry[0].params == {"x": 0.25}
    assert retry_key(retry[0]) == trial.number
    assert "interrupted" not in retry[0].user_attrs  # the retry is a new attempt


def test_trials_of_other_hosts_are_left_to_the_heartbeat(study) -> None:
    trial = start_trial(study, dead_pid())
    trial.set_user_attr("host", "another-machine")
    assert fail_dead_trials(study) == []
    assert study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING


def test_a_trial_asked_but_never_claimed_is_retried_after_the_grace_period(study) -> None:
    """A process killed between Optuna's ask and its claim leaves a RUNNING trial with no
    heartbeat and no owner: within the grace period it is left alone, after it retried."""
    trial = study.ask()
    study._storage.set_trial_param(trial._trial_id, "x", 0.25, FloatDistribution(0.0, 1.0))
    assert recover_trials(study, grace_period=3600) == []  # it may still be claimed
    assert study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING
    assert recover_trials(study, grace_period=0) == [trial.number]
    retry = study.get_trials(states=(TrialState.WAITING,))
    assert len(retry) == 1 and retry[0].params == {"x": 0.25}
    assert retry_key(retry[0]) == trial.number
    assert study.retried == [trial.number]


def test_asked_trials_are_claimed_with_their_first_heartbeat(study) -> None:
    """``ask_trials(owner=...)`` records each trial's owner and heartbeat with the ask: none
    is ever unowned, however long after the ask another worker looks."""
    from sweeps.workers.worker import ask_trials

    owner = {"host": socket.gethostname(), "pid": os.getpid(), "session": "s"}
    asked = ask_trials(study, n_trials=5, k=3, owner=owner)
    ids = [t._trial_id for t in asked]
    assert len(asked) == 3 and heartbeat_ids(study._storage, ids) == set(ids)
    for t in study.get_trials():
        assert {k: t.user_attrs.get(k) for k in owner} == owner
    assert fail_unowned_trials(study, grace_period=0) == []
    assert fail_dead_trials(study) == []  # this process owns them, and it is alive


def test_two_workers_never_pop_the_same_queued_trial(tmp_path) -> None:
    """Queued trials (retries) are popped by ``study.ask()``: on SQLite, two workers asking at
    once must get different trials (each worker has its own storage connection)."""
    import threading

    url, cfg, queued = f"sqlite:///{tmp_path / 'optuna.db'}", McmcOptunaSweeperConf(), 40
    first = open_study(open_storage(url, cfg), "race", cfg, create=True)
    for i in range(queued):
        first.enqueue_trial({"x": float(i)}, skip_if_exists=False)
    workers = [open_study(open_storage(url, cfg), "race", cfg) for _ in range(2)]
    popped: list[list[int]] = [[], []]

    def ask(i: int) -> None:
        for _ in range(queued // 2):
            popped[i].append(workers[i].ask().number)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    numbers = popped[0] + popped[1]
    assert sorted(numbers) == list(range(queued)), sorted(numbers)  # each exactly once
    assert not first.get_trials(states=(TrialState.WAITING,))


# -- progress -------------------------------------------------------------------------------------

def test_progress_with_queued_trials(tmp_path, capsys) -> None:
    """A queued retry (WAITING, no dates yet) next to finished trials is fine for the bar."""
    from sweeps.workers.progress import SweepProgress

    cfg = McmcOptunaSweeperConf()
    s = open_study(open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", cfg), "bar", cfg,
                   create=True)
    progress = SweepProgress(s, n_trials=3, metric="val_accuracy", enabled=False)
    done = s.ask()
    done.suggest_float("temperature", 1e-5, 1e-2, log=True)
    s.tell(done, 0.75)
    s.enqueue_trial({"temperature": 1e-3})
    running = s.ask()  # pops the queued one
    s.enqueue_trial({"temperature": 2e-3})  # queued again: WAITING next to finished trials
    update = progress.update()
    assert update["best"] == 0.75
    counts = update["counts"]
    assert (counts.complete, counts.running, counts.waiting) == (1, 1, 1)
    out = capsys.readouterr().out
    assert "[1/3 best 0.7500] trial   0 COMPLETE val_accuracy=0.7500" in out
    assert running.number == 1
    progress.close()


# -- a trial taken over by its retry --------------------------------------------------------------

def test_trial_failed_meanwhile_by_another_process_stops_quietly(tmp_path) -> None:
    """A worker whose trial was declared dead meanwhile (stale heartbeat: the machine slept)
    and failed by another process stops that trial without raising (which would kill the worker
    and the sweep) and without touching the stored trial."""
    from mcmc_core.config import TrainConfig
    from sweeps.workers.trial_context import TrialContext
    from sweeps.workers.trial_runner import run_trials

    base = OmegaConf.to_container(OmegaConf.structured(TrainConfig))
    base["dataset"]["name"], base["device"] = "synthetic", "cpu"
    base["trainer"].update(epochs=3, steps_per_epoch=20)
    base["tracking"]["enabled"] = False
    cfg, url = McmcOptunaSweeperConf(), f"sqlite:///{tmp_path / 'optuna.db'}"
    s = open_study(open_storage(url, cfg), "taken", cfg, create=True)
    trial = s.ask()
    elsewhere = open_storage(url, cfg)  # another process's connection
    polls: list[int] = []

    def stop() -> bool:  # called after each epoch's report: the takeover happens after epoch 1
        if not polls:
            elsewhere.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        polls.append(1)
        return False

    space = SearchSpace({"temperature": SPECS["temperature"]})
    ctx = TrialContext(study_name="taken", base_config=base, space=space, metric="val_accuracy",
                       output_dir=tmp_path, session="s1", parent_run_id=None, device="cpu",
                       stop=stop)
    assert run_trials(s, [trial], ctx) == [TrialState.FAIL]
    stored = s._storage.get_trial(trial._trial_id)
    assert stored.state == TrialState.FAIL
    assert "error" not in stored.user_attrs
    assert sorted(stored.intermediate_values) == [1]
