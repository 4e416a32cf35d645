"""Units of ``study.population``: which configs may run as populations, the chains' seeds, asking
for a population's trials, and :func:`~sweeps.population.run_population` in this process on a
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
from sweeps.chains import Chain, chain_seed, continue_chain_alone, flip_groups
from sweeps.config import ParamSpec, StudyConfig
from sweeps.population import CHAIN_KEYS, population_errors, run_population
from sweeps.space import SearchSpace
from sweeps.study import open_storage, open_study
from sweeps.trial import TrialContext
from sweeps.worker import ask_trials

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
    cfg.schedule.unit, cfg.flip_schedule.name = "epochs", "exponential"
    search = {**SEARCH, "hidden": ParamSpec(key="model.hidden", type="categorical",
                                            choices=[[], [64]])}
    assert population_errors(cfg, search, 8) == [
        "trainer.name='ste' is not allowed: expected mcmc with study.population=8",
        "model.name='cnn' is not allowed: expected mlp with study.population=8",
        ("sampler.n_replicas=4 is not allowed: expected 1 (no parallel tempering) with "
         "study.population=8"),
        "schedule.unit='epochs' is not allowed: expected steps with study.population=8",
        ("flip_schedule.name='exponential' is not allowed: expected constant with "
         "study.population=8"),
        ("search.hidden.key='model.hidden' is not allowed: expected one of "
         f"{', '.join(CHAIN_KEYS)} with study.population=8 (the values a chain has of its own)"),
    ]


def test_a_searched_seed_needs_the_whole_training_split_as_energy() -> None:
    cfg = TrainConfig()
    cfg.sampler.energy_samples = 500
    search = {"seed": ParamSpec(key="seed", type="int", low=0, high=9)}
    assert population_errors(cfg, search, 2) == [
        ("sampler.energy_samples=500 is not allowed: expected null when seed is searched with "
         "study.population=2 (the chains share one energy set)")]
    assert population_errors(cfg, SEARCH, 2) == []


def test_chain_seeds_are_distinct_per_trial_and_resume_point() -> None:
    seeds = {chain_seed(0, key, step) for key in range(50) for step in (0, 500, 1000)}
    assert len(seeds) == 150
    assert chain_seed(3, 7, 500) == chain_seed(3, 7, 500)  # the same for every retry
    assert all(0 <= s < 2**63 for s in seeds)


# -- asking for a population ----------------------------------------------------------------------

def test_ask_trials_never_takes_the_study_past_n_trials(tmp_path) -> None:
    cfg = StudyConfig()
    study = open_study(open_storage(f"sqlite:///{tmp_path / 'o.db'}", cfg), "ask", cfg,
                       create=True)
    for _ in range(2):
        study.tell(study.ask(), 0.5)
    asked = ask_trials(study, n_trials=4, k=4)
    assert [t.number for t in asked] == [2, 3]
    # The third ask would have been a fifth trial: given back, to be popped by the next ask.
    assert [t.state for t in study.get_trials()][2:] == [TrialState.RUNNING] * 2 + [
        TrialState.WAITING]


# -- run_population in this process ---------------------------------------------------------------

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
    cfg = StudyConfig(sampler="random")
    return open_study(open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", cfg), name, cfg,
                      create=True)


def test_interrupted_chains_continue_from_their_checkpoints_beside_a_fresh_chain(
        tmp_path, uri) -> None:
    from mlflow import MlflowClient

    study = new_study(tmp_path, "resume")

    def stop() -> bool:  # asked after each epoch's reports: stop after epoch 1
        return True

    first = [study.ask() for _ in range(2)]
    assert run_population(study, first, context(tmp_path, "resume", uri, stop=stop)) == [
        TrialState.FAIL] * 2
    before = study.get_trials()
    # Interrupted after epoch 1: failed without an error, queued with the same parameters.
    assert all(t.user_attrs["interrupted"] and "error" not in t.user_attrs for t in before[:2])
    assert [t.state for t in before[2:]] == [TrialState.WAITING] * 2
    for t in before[:2]:
        assert load_checkpoint(tmp_path / "checkpoints" / f"trial-{t.number:04d}" /
                               "chain.pt")["epoch"] == 1
    client = MlflowClient(tracking_uri=uri)
    assert {client.get_run(t.user_attrs["mlflow_run_id"]).info.status for t in before[:2]} == {
        "KILLED"}

    # The two retries and a fresh trial run as one population.
    second = ask_trials(study, n_trials=3, k=3)
    assert [t.number for t in second] == [2, 3, 4]
    assert run_population(study, second, context(tmp_path, "resume", uri)) == [
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
        steps = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "step"))
        assert steps == [(1, STEPS), (2, 2 * STEPS), (3, 3 * STEPS)]
        # The elapsed steps were folded into the start temperature: the schedule goes on.
        state = load_checkpoint(tmp_path / "checkpoints" / f"trial-{old.number:04d}" /
                                "chain.pt")
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
    assert run_population(study, trials, ctx) == [TrialState.FAIL] * 2
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
    assert run_population(study, trials, ctx) == [TrialState.FAIL] * 3
    errors = {t.user_attrs["error"].split(":")[0] for t in study.get_trials()}
    assert errors == {"DatasetNotFoundError"}


def test_checkpoint_holds_the_chain_weights(tmp_path) -> None:
    study = new_study(tmp_path, "weights")
    trials = [study.ask() for _ in range(2)]
    assert run_population(study, trials, context(tmp_path, "weights")) == [
        TrialState.COMPLETE] * 2
    states = [load_checkpoint(tmp_path / "checkpoints" / f"trial-{t.number:04d}" / "chain.pt")
              for t in trials]
    for state in states:
        assert [tuple(w.shape) for w in state["weights"]] == [(3, 16)]  # synthetic: 16 -> 3
        assert set(state["weights"][0].unique().tolist()) <= {-1.0, 1.0}
        assert state["best_metric"]["epoch"] in range(1, EPOCHS + 1)
        assert 0 < state["accepted"] <= EPOCHS * STEPS
    assert not torch.equal(states[0]["weights"][0], states[1]["weights"][0])


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
        assert run_population(study, trials, ctx) == [TrialState.COMPLETE] * len(params)
        histories.append(load_checkpoint(tmp_path / name / "checkpoints" / "trial-0000" /
                                         "chain.pt"))
    alone, batched = histories
    for key in ("energy", "val_accuracy", "train_loss", "acceptance_rate", "temperature"):
        assert [h[key] for h in alone["history"]] == [h[key] for h in batched["history"]], key
    assert all(torch.equal(a, b) for a, b in zip(alone["weights"], batched["weights"]))


def test_a_trial_taken_over_by_another_process_leaves_quietly(tmp_path) -> None:
    """One trial of a population is failed meanwhile by another process (stale heartbeat): it
    leaves the batch without raising and without touching the stored trial; the others go on."""
    study = new_study(tmp_path, "taken")
    trials = [study.ask() for _ in range(2)]
    elsewhere = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", StudyConfig())
    polls: list[int] = []

    def stop() -> bool:  # asked after each epoch's reports: the takeover follows epoch 1
        if not polls:
            elsewhere.set_trial_state_values(trials[0]._trial_id, state=TrialState.FAIL)
        polls.append(1)
        return False

    ctx = context(tmp_path, "taken", stop=stop)
    assert run_population(study, trials, ctx) == [TrialState.FAIL, TrialState.COMPLETE]
    taken, other = study.get_trials()
    assert "error" not in taken.user_attrs and sorted(taken.intermediate_values) == [1]
    assert sorted(other.intermediate_values) == list(range(1, EPOCHS + 1))


def test_heartbeats_cover_every_trial_of_a_population(tmp_path) -> None:
    import sqlalchemy

    from sweeps.worker import heartbeat

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = open_study(open_storage(url, StudyConfig()), "beat", StudyConfig(), create=True)
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


def test_the_checkpoint_that_went_further_is_continued_in_either_direction(tmp_path) -> None:
    """A trial's folder may hold a lone ``last.pt`` and a population's ``chain.pt`` (its
    attempts switched between ``study.population=1`` and more): a population chain and a lone
    trainer each continue the one with more steps."""
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainConfig), {
        "dataset": {"name": "synthetic"}, "tracking": {"enabled": False},
        "trainer": {"epochs": 2, "steps_per_epoch": 50, "checkpoint_dir": str(tmp_path),
                    "resume": True, "verbose": False}}))
    lone = build_trainer(cfg)
    lone.train(1)  # last.pt at step 50
    chain = Chain(trial=None, key=0, previous_run=None, cfg=cfg)  # type: ignore[arg-type]
    chain.load()  # no chain.pt: the lone attempt's state
    assert (chain.epoch, chain.step) == (1, 50) and chain.weights is not None
    weights = [w.clone() for w in chain.weights]
    weights[0][0, 0] *= -1  # a chain that moved on from there
    chain.epoch, chain.step = 2, 100
    chain.history.append({**chain.history[-1], "epoch": 2.0, "step": 100.0})
    chain.save(weights)

    again = Chain(trial=None, key=0, previous_run=None, cfg=cfg)  # type: ignore[arg-type]
    again.load()  # chain.pt went further than last.pt
    assert again.step == 100 and torch.equal(again.weights[0], weights[0])
    assert continue_chain_alone(build_trainer(cfg))  # writes last.pt from chain.pt
    resumed = load_checkpoint(tmp_path / "last.pt")
    assert (resumed["epoch"], resumed["step"]) == (2, 100)
    assert resumed["engine"]["population"]["n_steps"] == 100
    assert torch.equal(next(iter(resumed["model"].values())), weights[0])
    assert resumed["history"] == again.history
    assert not continue_chain_alone(build_trainer(cfg))  # last.pt is as far now

    trainer = build_trainer(cfg)
    trainer.train()  # already at epoch 2: nothing to run, the chain's state is loaded
    assert trainer.epoch == 2 and trainer.step == 100
    assert torch.equal(next(iter(trainer.model.state_dict().values())), weights[0])
    energy = trainer.engine.population.energies  # type: ignore[attr-defined]
    assert torch.equal(energy, trainer.engine.population.full_energies())  # type: ignore
    trainer.train(3)  # the lone trainer goes further: last.pt at step 150
    last = Chain(trial=None, key=0, previous_run=None, cfg=cfg)  # type: ignore[arg-type]
    last.load()
    assert (last.epoch, last.step) == (3, 150)
    assert last.history[:2] == again.history

    (tmp_path / "last.pt").unlink()  # a chain.pt ahead, and a trainer that cannot continue it
    cfg.sampler.n_replicas = 2
    with pytest.warns(UserWarning, match="cannot continue the chain checkpoint at step 100"):
        assert not continue_chain_alone(build_trainer(cfg))
