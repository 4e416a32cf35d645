"""Units of ``hydra.sweeper.population``: which configs may run as populations, the chains' seeds,
asking for a population's trials, and :func:`~sweeps.workers.trial_runner.run_trials` in this process on a
real SQLite Optuna storage and MLflow store: an interrupted population is queued and its chains
continue from their checkpoints beside a fresh chain; a diverged population fails with its
error; an exception fails every trial of the population."""

from __future__ import annotations

import time

import optuna
import pytest
import torch
from omegaconf import OmegaConf
from optuna.trial import TrialState

from mcmc_core.config import TrainConfig, build_trainer
from mcmc_core.trainers import load_checkpoint
from mcmc_core.trainers import flip_groups
from sweeps.sweeper.config import ParamSpec
from sweeps.workers.population_rules import CHAIN_KEYS, population_errors
from sweeps.workers.trial_runner import run_trials
from sweeps.study.space import SearchSpace
from sweeps.study.trials import open_storage, open_study
from sweeps.sweeper.settings import McmcOptunaSweeperConf
from sweeps.workers.trial_context import TrialContext
from sweeps.workers.worker import ask_trials

pytestmark = [pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
              pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")]

EPOCHS, STEPS = 3, 20
SEARCH = {"temperature": ParamSpec(key="sampler.temperature", type="float", low=1e-4,
                                   high=1e-2, log=True),
          "cooling_rate": ParamSpec(key="schedule.cooling_rate", type="float", low=0.99,
                                    high=0.999)}


# -- population_errors ----------------------------------------------------------------------------

def test_default_sweep_config_can_run_as_populations() -> None:
    assert population_errors(TrainConfig(), SEARCH, 4) == []


def test_population_errors_name_each_bad_value_and_what_is_allowed() -> None:
    cfg = TrainConfig()
    cfg.trainer.name, cfg.model.name, cfg.sampler.n_replicas = "ste", "cnn", 4
    cfg.schedule.unit, cfg.flip_schedule.name = "epochs", "exponential"  # allowed: per chain
    search = {**SEARCH, "hidden": ParamSpec(key="model.hidden", type="categorical",
                                            choices=[[], [64]])}
    assert population_errors(cfg, search, 8) == [
        "trainer.name='ste' is not allowed: expected mcmc with hydra.sweeper.population=8",
        "model.name='cnn' is not allowed: expected mlp with hydra.sweeper.population=8",
        ("sampler.n_replicas=4 is not allowed: expected 1 (no parallel tempering) with "
         "hydra.sweeper.population=8"),
        ("hydra.sweeper.params.model.hidden.key='model.hidden' is not allowed: expected one of "
         f"{', '.join(CHAIN_KEYS)} (or a key under one) with hydra.sweeper.population=8 (the "
         "values a chain has of its own)"),
    ]
    # A population of one has no other chain to share with: any search.
    assert population_errors(TrainConfig(), search, 1) == []


def test_a_searched_seed_needs_the_whole_training_split_as_energy() -> None:
    cfg = TrainConfig()
    cfg.sampler.energy_samples = 500
    search = {"seed": ParamSpec(key="seed", type="int", low=0, high=9)}
    assert population_errors(cfg, search, 2) == [
        ("sampler.energy_samples=500 is not allowed: expected null when seed is searched with "
         "hydra.sweeper.population=2 (the chains share one energy set)")]
    assert population_errors(cfg, SEARCH, 2) == []


# -- asking for a population ----------------------------------------------------------------------

def test_ask_trials_never_takes_the_study_past_n_trials(tmp_path) -> None:
    cfg = McmcOptunaSweeperConf()
    study = open_study(open_storage(f"sqlite:///{tmp_path / 'o.db'}", cfg), "ask", cfg,
                       create=True)
    for _ in range(2):
        study.tell(study.ask(), 0.5)
    asked = ask_trials(study, n_trials=4, k=4)
    assert [t.number for t in asked] == [2, 3]
    # A third ask would have been a fifth trial: the study's count stops the batch first.
    assert [t.state for t in study.get_trials()][2:] == [TrialState.RUNNING] * 2


# -- run_trials in this process ------------------------------------------------------------------

@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    """One MLflow store for the module's tests (each has its own experiment)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def context(tmp_path, study_name: str, uri: str | None = None, *, stop=lambda: False,
            search: dict[str, ParamSpec] = SEARCH, **overrides) -> TrialContext:
    base = OmegaConf.to_container(OmegaConf.structured(TrainConfig))
    base["dataset"]["name"], base["device"] = "synthetic", "cpu"
    base["trainer"].update(epochs=EPOCHS, steps_per_epoch=STEPS)
    base["tracking"].update(enabled=uri is not None, uri=uri)
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        base[section][key] = value
    return TrialContext(study_name=study_name, base_config=base, space=SearchSpace(search),
                        metric="val_accuracy", output_dir=tmp_path, session="s1",
                        parent_run_id=None, device="cpu", stop=stop)


def new_study(tmp_path, name: str) -> optuna.Study:
    cfg = McmcOptunaSweeperConf(sampler="random")
    return open_study(open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", cfg), name, cfg,
                      create=True)


def test_interrupted_chains_continue_from_their_checkpoints_beside_a_fresh_chain(
        tmp_path, uri) -> None:
    from mlflow import MlflowClient

    study = new_study(tmp_path, "resume")

    def stop() -> bool:  # asked after each epoch's reports: stop after epoch 1
        return True

    first = [study.ask() for _ in range(2)]
    assert run_trials(study, first, context(tmp_path, "resume", uri, stop=stop)) == [
        TrialState.FAIL] * 2
    before = study.get_trials()
    # Interrupted after epoch 1: failed without an error, queued with the same parameters.
    assert all(t.user_attrs["interrupted"] and "error" not in t.user_attrs for t in before[:2])
    assert [t.state for t in before[2:]] == [TrialState.WAITING] * 2
    for t in before[:2]:
        assert load_checkpoint(tmp_path / "checkpoints" / f"trial-{t.number:04d}" /
                               "last.pt")["epoch"] == 1
    client = MlflowClient(tracking_uri=uri)
    assert {client.get_run(t.user_attrs["mlflow_run_id"]).info.status for t in before[:2]} == {
        "KILLED"}

    # The two retries and a fresh trial run as one population.
    second = ask_trials(study, n_trials=3, k=3)
    assert [t.number for t in second] == [2, 3, 4]
    assert run_trials(study, second, context(tmp_path, "resume", uri)) == [
        TrialState.COMPLETE] * 3
    trials = study.get_trials()
    for old in before[:2]:
        retry = next(t for t in trials if t.system_attrs.get("failed_trial") == old.number)
        assert retry.params == old.params and retry.state == TrialState.COMPLETE
        # Epoch 1 re-reported from the checkpoint, epochs 2 and 3 run in the new population.
        assert sorted(retry.intermediate_values) == [1, 2, 3]
        assert retry.intermediate_values[1] == old.intermediate_values[1]
        run_id = retry.user_attrs["mlflow_run_id"]
        assert run_id == old.user_attrs["mlflow_run_id"]  # the same run, continued
        assert client.get_run(run_id).info.status == "FINISHED"
        steps = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "n_steps"))
        assert steps == [(1, STEPS), (2, 2 * STEPS), (3, 3 * STEPS)]
        # The schedule goes on at the chain's own step.
        state = load_checkpoint(tmp_path / "checkpoints" / f"trial-{old.number:04d}" /
                                "last.pt")
        t0, rate = old.params["temperature"], old.params["cooling_rate"]
        assert [h["temperature"] for h in state["history"]] == pytest.approx(
            [max(1e-6, t0 * rate ** (e * STEPS)) for e in (1, 2, 3)], rel=1e-9)
        assert state["epoch"] == EPOCHS and state["step"] == EPOCHS * STEPS
    fresh = trials[4]
    assert "failed_trial" not in fresh.system_attrs and sorted(fresh.intermediate_values) == [
        1, 2, 3]


def test_a_diverged_population_fails_with_its_error(tmp_path, uri) -> None:
    from mlflow import MlflowClient

    study = new_study(tmp_path, "nan")
    trials = [study.ask() for _ in range(2)]
    ctx = context(tmp_path, "nan", uri, model__output_scale=1e300)
    assert run_trials(study, trials, ctx) == [TrialState.FAIL] * 2
    for t in study.get_trials():
        assert t.user_attrs["error"].startswith("FloatingPointError: ")
        assert "the chain diverged" in t.user_attrs["error"]
        assert "Traceback" in t.user_attrs["traceback"]
        assert t.user_attrs.get("interrupted") is None
        run = MlflowClient(tracking_uri=uri).get_run(t.user_attrs["mlflow_run_id"])
        assert run.info.status == "FAILED" and run.data.tags["error"] == t.user_attrs["error"]
        assert run.data.tags["optuna.state"] == "FAIL"
    assert study.get_trials(states=(TrialState.WAITING,)) == []  # failures are not retried


def test_an_exception_fails_every_trial_of_the_population(tmp_path) -> None:
    study = new_study(tmp_path, "raise")
    trials = [study.ask() for _ in range(3)]
    ctx = context(tmp_path, "raise", dataset__name="idx",
                  dataset__root=str(tmp_path / "missing"))
    assert run_trials(study, trials, ctx) == [TrialState.FAIL] * 3
    errors = {t.user_attrs["error"].split(":")[0] for t in study.get_trials()}
    assert errors == {"DatasetNotFoundError"}


def test_checkpoint_holds_the_chain_weights(tmp_path) -> None:
    study = new_study(tmp_path, "weights")
    # A chain's stream is its seed's (as a lone trial's), so two trials differ by their values.
    study.enqueue_trial({"temperature": 1e-4, "cooling_rate": 0.99})
    study.enqueue_trial({"temperature": 1e-2, "cooling_rate": 0.999})
    trials = [study.ask() for _ in range(2)]
    assert run_trials(study, trials, context(tmp_path, "weights")) == [
        TrialState.COMPLETE] * 2
    states = [load_checkpoint(tmp_path / "checkpoints" / f"trial-{t.number:04d}" / "last.pt")
              for t in trials]
    weights = [next(iter(state["model"].values())) for state in states]
    for state, w in zip(states, weights):
        assert tuple(w.shape) == (3, 16)  # synthetic: 16 -> 3
        assert set(w.unique().tolist()) <= {-1.0, 1.0}
        assert state["best_metric"]["epoch"] in range(1, EPOCHS + 1)
        assert 0 < int(state["engine"]["population"]["n_accepted"][0]) <= EPOCHS * STEPS
    assert not torch.equal(weights[0], weights[1])


def test_flip_groups_split_chains_by_flip_count_at_least_cost() -> None:
    # Equal counts: one group (a second group would only add a step's overhead).
    assert flip_groups([3, 3, 3, 3]) == [[0, 1, 2, 3]]
    # One chain with many flips would make every step as slow: it goes alone.
    assert flip_groups([1, 38, 1, 2, 1], overhead=25) == [[0, 2, 4, 3], [1]]
    # Runs of sorted counts; with no overhead every distinct count is its own group.
    assert flip_groups([5, 1, 5, 2], overhead=0) == [[1], [3], [0, 2]]
    assert sorted(i for g in flip_groups(list(range(1, 17))) for i in g) == list(range(16))


def test_a_trial_gives_the_same_result_alone_and_in_any_population(tmp_path) -> None:
    """A chain's steps depend on its own seed, values and weights only: not on the chains it
    is batched with, nor on how they are grouped by flip count."""
    search = {**SEARCH, "flip_ratio": ParamSpec(key="sampler.flip_ratio", type="float",
                                                low=1e-3, high=1.0, log=True)}
    first = {"temperature": 1e-3, "cooling_rate": 0.995, "flip_ratio": 0.02}
    # 1 flip of the 48 weights (synthetic 16 -> 3), 43 flips, 1 flip: two flip-count groups.
    others = [{"temperature": 3e-3, "cooling_rate": 0.99, "flip_ratio": 0.9},
              {"temperature": 1e-4, "cooling_rate": 0.999, "flip_ratio": 0.02}]
    assert flip_groups([1, 43, 1]) == [[0, 2], [1]]
    histories = []
    for name, params in (("alone", [first]), ("batched", [first, *others])):
        (tmp_path / name).mkdir()
        study = new_study(tmp_path / name, name)
        for p in params:
            study.enqueue_trial(p)
        trials = [study.ask() for _ in params]
        ctx = context(tmp_path / name, name, search=search)
        assert run_trials(study, trials, ctx) == [TrialState.COMPLETE] * len(params)
        histories.append(load_checkpoint(tmp_path / name / "checkpoints" / "trial-0000" /
                                         "last.pt"))
    alone, batched = histories
    for key in ("energy", "val_accuracy", "train_loss", "acceptance_rate", "temperature"):
        assert [h[key] for h in alone["history"]] == [h[key] for h in batched["history"]], key
    assert all(torch.equal(a, b) for a, b in zip(alone["model"].values(),
                                                 batched["model"].values()))


def test_a_trial_taken_over_by_another_process_leaves_quietly(tmp_path) -> None:
    """One trial of a population is failed meanwhile by another process (stale heartbeat): it
    leaves the batch without raising and without touching the stored trial; the others go on."""
    study = new_study(tmp_path, "taken")
    trials = [study.ask() for _ in range(2)]
    elsewhere = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", McmcOptunaSweeperConf())
    polls: list[int] = []

    def stop() -> bool:  # asked after each epoch's reports: the takeover follows epoch 1
        if not polls:
            elsewhere.set_trial_state_values(trials[0]._trial_id, state=TrialState.FAIL)
        polls.append(1)
        return False

    ctx = context(tmp_path, "taken", stop=stop)
    assert run_trials(study, trials, ctx) == [TrialState.FAIL, TrialState.COMPLETE]
    taken, other = study.get_trials()
    assert "error" not in taken.user_attrs and sorted(taken.intermediate_values) == [1]
    assert sorted(other.intermediate_values) == list(range(1, EPOCHS + 1))


def test_heartbeats_cover_every_trial_of_a_population(tmp_path) -> None:
    import sqlalchemy

    from sweeps.workers.worker import heartbeat

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    settings = McmcOptunaSweeperConf()
    study = open_study(open_storage(url, settings), "beat", settings, create=True)
    trials = [study.ask() for _ in range(3)]
    engine = sqlalchemy.create_engine(url)

    def beating() -> set[int]:
        with engine.connect() as db:
            rows = db.execute(sqlalchemy.text("SELECT trial_id FROM trial_heartbeats"))
            return {row[0] for row in rows}

    with heartbeat(study._storage, trials, interval=1):
        deadline = time.monotonic() + 10
        while len(beating()) < len(trials) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert beating() == {t._trial_id for t in trials}


TIMING = ("epoch_time", "wall_time", "steps_per_s")


def _untimed(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


def _run_to_end(tmp_path, name: str, params: list[dict], stop_after: int | None = None,
                **overrides) -> list[dict]:
    """Run trials with ``params`` as one population (stopped after epoch ``stop_after``, then
    resumed as populations of one); returns their checkpoints."""
    (tmp_path / name).mkdir()
    study = new_study(tmp_path / name, name)
    for p in params:
        study.enqueue_trial(p)
    polls: list[int] = []

    def stop() -> bool:
        polls.append(1)
        return stop_after is not None and len(polls) == stop_after

    ctx = context(tmp_path / name, name, stop=stop, **overrides)
    run_trials(study, [study.ask() for _ in params], ctx)
    while retries := study.get_trials(states=(TrialState.WAITING,)):
        for _ in retries:  # each retry alone: a population of one
            run_trials(study, [study.ask()], ctx)
    folder = tmp_path / name / "checkpoints"
    return [load_checkpoint(folder / f"trial-{k:04d}" / "last.pt") for k in range(len(params))]


SCHEDULES = [{"schedule__name": "exponential"}, {"schedule__name": "step", "schedule__step_size": 7},
             {"schedule__name": "linear"}, {"schedule__name": "cosine", "schedule__unit": "epochs"},
             {"schedule__name": "constant", "flip_schedule__name": "exponential",
              "flip_schedule__cooling_rate": 0.95}]


@pytest.mark.parametrize("schedules", SCHEDULES, ids=lambda s: "-".join(map(str, s.values())))
def test_a_population_killed_and_resumed_alone_is_bit_identical(tmp_path, schedules) -> None:
    """Every temperature and flip-ratio schedule runs in a population; a population stopped
    after epoch 1 whose trials are resumed alone reaches the weights, acceptances and metrics of
    the uninterrupted population, bit for bit."""
    params = [{"temperature": 1e-3, "cooling_rate": 0.995}, {"temperature": 3e-3,
                                                             "cooling_rate": 0.99}]
    whole = _run_to_end(tmp_path, "whole", params, **schedules)
    resumed = _run_to_end(tmp_path, "resumed", params, stop_after=1, **schedules)
    for a, b in zip(whole, resumed):
        assert (a["epoch"], a["step"]) == (b["epoch"], b["step"]) == (EPOCHS, EPOCHS * STEPS)
        assert _untimed(a["history"]) == _untimed(b["history"])
        assert all(torch.equal(x, y) for x, y in zip(a["model"].values(), b["model"].values()))
        pa, pb = a["engine"]["population"], b["engine"]["population"]
        assert torch.equal(pa["n_accepted"], pb["n_accepted"])
    temperatures = [h["temperature"] for h in whole[0]["history"]]
    assert len(set(temperatures)) == (1 if schedules["schedule__name"] == "constant" else EPOCHS)


def test_a_population_chain_is_the_lone_trainers_chain(tmp_path) -> None:
    """A trial's checkpoint is the lone trainer's: ``mcmc-train`` resumes a population chain
    stopped after epoch 1 and reaches the population's weights."""
    params = [{"temperature": 1e-3, "cooling_rate": 0.995}, {"temperature": 3e-3,
                                                             "cooling_rate": 0.99}]
    whole = _run_to_end(tmp_path, "whole", params)
    (tmp_path / "stopped").mkdir()
    study = new_study(tmp_path / "stopped", "stopped")
    for p in params:
        study.enqueue_trial(p)
    ctx = context(tmp_path / "stopped", "stopped", stop=lambda: True)
    run_trials(study, [study.ask() for _ in params], ctx)
    folder = tmp_path / "stopped" / "checkpoints" / "trial-0001"
    cfg: TrainConfig = OmegaConf.to_object(OmegaConf.merge(  # type: ignore[assignment]
        OmegaConf.structured(TrainConfig), load_checkpoint(folder / "last.pt")["config"]))
    cfg.trainer.checkpoint_dir, cfg.tracking.enabled = str(folder), False
    trainer = build_trainer(cfg)
    trainer.train()
    assert trainer.epoch == EPOCHS and trainer.step == EPOCHS * STEPS
    assert all(torch.equal(x, y) for x, y in zip(trainer.model.state_dict().values(),
                                                 whole[1]["model"].values()))


@pytest.mark.parametrize("size", [1, 2])
@pytest.mark.parametrize("incremental", [True, False])  # False: by its own trainer
def test_a_stop_after_the_last_epoch_completes_the_trials(tmp_path, size, incremental) -> None:
    """Ctrl-C after a trial's last epoch keeps it COMPLETE: nothing is queued to run again."""
    if size > 1 and not incremental:
        pytest.skip("only a lone trial runs by its trainer")
    study = new_study(tmp_path, "last")
    trials = [study.ask() for _ in range(size)]
    ctx = context(tmp_path, "last", stop=lambda: True, trainer__epochs=1,
                  sampler__incremental=incremental)
    assert run_trials(study, trials, ctx) == [TrialState.COMPLETE] * size
    assert study.get_trials(states=(TrialState.WAITING,)) == []
