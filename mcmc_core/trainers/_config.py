"""Typed configuration of the training loop (``trainer`` group)."""

from __future__ import annotations

from dataclasses import dataclass

from mcmc_core._validation import check, check_choice

TRAINER_NAMES = ("mcmc", "ste")


@dataclass
class TrainerConfig:
    """How long to train, how to report and where to checkpoint.

    Args:
        name: ``mcmc`` (the sign-flip chain) or ``ste`` (the gradient baseline: straight-through
            estimator with Adam on latent weights clipped to [-1, 1]).
        epochs: number of epochs (>= 1).
        steps_per_epoch: MCMC steps per epoch; null = one pass over the training split in
            mini-batches of ``sampler.batch_size``.
        eval_batch_size: chunk size of the per-epoch evaluation.
        checkpoint_dir: folder for ``last.pt`` (the whole chain state, written atomically every
            epoch); null = no checkpoints.
        resume: continue from ``checkpoint_dir/last.pt`` when it exists.
        lr: Adam learning rate of ``ste``.
        batch_size: mini-batch size of ``ste``.
        verbose: print one line per epoch.
        threads: torch's CPU threads while training; null = one per chain for the incremental
            kernel on the CPU (its ops are small: a second thread gains 0-12 % on an idle
            machine and cost 6.8x beside other work, benchmarks/README.md), else torch's setting.
    """

    name: str = "mcmc"
    epochs: int = 20
    steps_per_epoch: int | None = 500
    eval_batch_size: int = 4096
    checkpoint_dir: str | None = None
    resume: bool = False
    lr: float = 0.001
    batch_size: int = 64
    verbose: bool = True
    threads: int | None = None

    def errors(self, prefix: str = "trainer") -> list[str]:
        """Every violation of this config, one line each (empty when valid)."""
        errors: list[str] = []
        check_choice(errors, f"{prefix}.name", self.name, TRAINER_NAMES)
        check(errors, self.epochs >= 1, f"{prefix}.epochs", self.epochs, ">= 1")
        check(errors, self.steps_per_epoch is None or self.steps_per_epoch >= 1,
              f"{prefix}.steps_per_epoch", self.steps_per_epoch, "null (one pass) or >= 1")
        check(errors, self.eval_batch_size >= 1, f"{prefix}.eval_batch_size",
              self.eval_batch_size, ">= 1")
        check(errors, self.lr > 0, f"{prefix}.lr", self.lr, "> 0")
        check(errors, self.batch_size >= 1, f"{prefix}.batch_size", self.batch_size, ">= 1")
        check(errors, self.threads is None or self.threads >= 1, f"{prefix}.threads",
              self.threads, "null (auto) or >= 1")
        check(errors, not self.resume or self.checkpoint_dir is not None, f"{prefix}.resume",
              self.resume, "false unless trainer.checkpoint_dir is set")
        return errors
