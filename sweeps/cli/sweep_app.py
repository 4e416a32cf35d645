"""``mcmc-sweep ARGS``: the shorthand of ``mcmc-train -m hparams_search=default ARGS``, the
default Optuna sweep (:mod:`sweeps.sweeper.run`), with no keys of its own.

Examples::

    mcmc-sweep                                   # the default sweep: digits, 2 workers
    mcmc-sweep hydra.sweeper.n_trials=40         # the same study, continued to 40 trials
    mcmc-sweep hydra.sweeper.dry_run=true        # print the plan, run nothing
    mcmc-sweep hydra.sweeper.report=true         # the report of the existing study
"""

from __future__ import annotations

import os
import sys
from typing import Any

from sweeps.cli import train_app as train

__all__ = ["ARGS", "main"]

#: What ``mcmc-sweep`` adds to its arguments (``hparams_search/default.yaml`` sets
#: ``hydra.mode: MULTIRUN``, so ``-m`` is implied and ``--cfg job`` works too).
ARGS = ["hparams_search=default"]


def main() -> Any:
    """Console entry point: ``mcmc-train`` with :data:`ARGS` (after the arguments, where
    Hydra's flags such as ``-sc query=bash`` keep theirs; in the line tab completion reads
    too), named ``mcmc-sweep`` in ``--help``."""
    sys.argv += ARGS + (["hydra.help.app_name=mcmc-sweep"] if "--help" in sys.argv else [])
    line = os.environ.get("COMP_LINE")
    if line is not None:
        program, _, rest = line.partition(" ")
        os.environ["COMP_LINE"] = " ".join([program, *ARGS, rest])
    return train.main()


if __name__ == "__main__":
    main()
