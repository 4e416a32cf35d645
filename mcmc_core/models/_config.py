"""Typed configuration of a model (also the Hydra schema of the ``model`` group)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mcmc_core._validation import check, check_choice
from mcmc_core.layers import OUTPUT_SCALE
from mcmc_core.models._init import INITS

MODEL_NAMES = ("mlp", "cnn", "alexnet", "resnet18")


@dataclass
class ModelConfig:
    """Which binary network to build. Input size and class count come from the data.

    Args:
        name: ``mlp``, ``cnn`` (a small conv net), ``alexnet`` or ``resnet18`` (torchvision,
            adapted to the data's channels and classes).
        hidden: hidden layer widths of ``mlp``; ``[]`` is a single binary layer
            (input -> classes), ``[256]`` gives input -> 256 -> classes.
        channels: conv channels of ``cnn``, one conv block per entry.
        output_scale: the last binary layer's output is ``output_scale / sqrt(fan_in)`` times its
            integer pre-activation, so one temperature means the same for narrow and wide nets.
        keep_activations: keep ``ReLU``/``PReLU`` layers (dropped by default: binary layers
            binarize their inputs by sign anyway).
        init: the start weights: ``random`` signs, or ``data`` (an ``mlp`` with hidden layers:
            its first hidden layer is ``sign(R (X - mean X))``, random combinations of the
            centred training inputs, drawn from the run's seed; the other layers random).
    """

    name: str = "mlp"
    hidden: list[int] = field(default_factory=list)
    channels: list[int] = field(default_factory=lambda: [32, 64])
    output_scale: float = OUTPUT_SCALE
    keep_activations: bool = False
    init: str = "random"

    def errors(self, prefix: str = "model") -> list[str]:
        """Every violation of this config, one line each (empty when valid)."""
        errors: list[str] = []
        check_choice(errors, f"{prefix}.name", self.name, MODEL_NAMES)
        check(errors, all(h >= 1 for h in self.hidden), f"{prefix}.hidden", list(self.hidden),
              "a list of positive layer widths")
        check(errors, len(self.channels) >= 1 and all(c >= 1 for c in self.channels),
              f"{prefix}.channels", list(self.channels), "a non-empty list of positive widths")
        check(errors, self.output_scale > 0, f"{prefix}.output_scale", self.output_scale, "> 0")
        check_choice(errors, f"{prefix}.init", self.init, INITS)
        check(errors, self.init != "data" or (self.name == "mlp" and bool(self.hidden)),
              f"{prefix}.init", self.init, f"random unless {prefix}.name=mlp with hidden layers "
              "(data sets the first hidden layer)")
        return errors
