"""``mcmc-train --help`` and ``mcmc-sweep --help`` name the command and list the config groups
and options that exist in ``conf/`` (no schema entries) and the sweep's settings
(``hydra.sweeper.*``); tab completion (Hydra's ``-sc``) installs and completes keys for both
commands, the sweep's settings too."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from sweeps.cli.help import config_groups

# name -> (command, arguments, extra environment)
CALLS = {
    "train help": ("mcmc-train", ["--help"], {}),
    "sweep help": ("mcmc-sweep", ["--help"], {}),
    "train install": ("mcmc-train", ["-sc", "install=bash"], {}),
    "sweep install": ("mcmc-sweep", ["--shell-completion", "install=bash"], {}),
    "train samp": ("mcmc-train", ["-sc", "query=bash"], {"COMP_LINE": "mcmc-train samp"}),
    "train sampler.": ("mcmc-train", ["-sc", "query=bash"],
                       {"COMP_LINE": "mcmc-train sampler."}),
    "train model=": ("mcmc-train", ["-sc", "query=bash"], {"COMP_LINE": "mcmc-train model="}),
    "sweep hydra.sweeper.n": ("mcmc-sweep", ["-sc", "query=bash"],
                              {"COMP_LINE": "mcmc-sweep hydra.sweeper.dry_run=true "
                                            "hydra.sweeper.n"}),
}


@pytest.fixture(scope="module")
def out(tmp_path_factory, cli) -> dict[str, str]:
    """Every call's stdout (each asserted to exit 0), two processes at a time."""
    cwd = tmp_path_factory.mktemp("help")

    def call(name: str) -> str:
        command, args, env = CALLS[name]
        return cli(args, cwd, command=command, env=env).ok().stdout

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(CALLS, pool.map(call, CALLS)))


def _group_lines(text: str) -> dict[str, list[str]]:
    """The ``group: a, b`` lines of a help text's group section."""
    section = text.split("== Config groups (group=option) ==\n")[1].split("\n\n")[0]
    return {line.split(":")[0]: line.split(":", 1)[1].strip().split(", ")
            for line in section.splitlines()}


@pytest.mark.parametrize("app", ["train", "sweep"])
def test_help_names_the_command_and_lists_real_groups_only(out, app: str) -> None:
    text = out[f"{app} help"]
    assert text.startswith(f"mcmc-{app}: ")
    assert "powered by Hydra" not in text and "_schema" not in text
    assert f"mcmc-{app} --hydra-help" in text and "docs/config.md" in text
    groups = _group_lines(text)
    assert groups == config_groups()
    assert "hparams_search" in groups and "search" not in groups  # one door into a sweep
    assert groups["flip_schedule"] == ["constant", "exponential"]
    assert "model:\n  name: mlp" in text  # the config follows
    # Then the sweep's settings, with their defaults.
    assert "hydra.sweeper.params.<config key>=" in text
    assert "n_trials=24" in text and "n_jobs=2" in text and "study_name=null" in text


@pytest.mark.parametrize("app", ["train", "sweep"])
def test_completion_install_prints_the_bash_script(out, app: str) -> None:
    script = out[f"{app} install"]
    assert "hydra_bash_completion()" in script
    assert script.rstrip().endswith(f"complete -o nospace -o default -F hydra_bash_completion "
                                    f"mcmc-{app}")


def test_completion_query_completes_groups_and_keys(out) -> None:
    assert set(out["train samp"].split()) == {"sampler.", "sampler="}
    keys = out["train sampler."].split()
    assert {"sampler.flip_ratio=", "sampler.temperature=", "sampler.acceptance="} <= set(keys)
    assert all(k.startswith("sampler.") for k in keys)
    assert out["train model="].split() == [f"model={o}" for o in config_groups()["model"]]
    assert sorted(out["sweep hydra.sweeper.n"].split()) == ["hydra.sweeper.n_jobs=",
                                                            "hydra.sweeper.n_trials="]
