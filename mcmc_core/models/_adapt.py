"""``fit_model``: make a user's model take the data's inputs and give its classes, or refuse in
one line."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import torch
from torch import nn

from mcmc_core.layers import BinaryLayer, binarize_model
from mcmc_core.models._torchvision import adapt_alexnet, adapt_resnet

__all__ = ["ModelMismatchError", "fit_model"]


class ModelMismatchError(ValueError):
    """A model cannot take the data's inputs or does not give one logit per class. The message
    is one line: the model, the data's input shape and class count, what torch said, and what
    to change."""


def _adapt_torchvision(model: nn.Module, input_shape: Sequence[int],
                       n_classes: int) -> list[str]:
    """Adapt a torchvision AlexNet or ResNet in place (what ``mcmc-train`` builds for
    ``model=alexnet`` / ``resnet18``); other models are left alone."""
    models = sys.modules.get("torchvision.models")  # not imported: not a torchvision model
    if models is None:
        return []
    if isinstance(model, models.AlexNet):
        return adapt_alexnet(model, input_shape, n_classes)
    if isinstance(model, models.ResNet):
        return adapt_resnet(model, input_shape, n_classes)
    return []


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _check_forward(model: nn.Module, sample: torch.Tensor, n_classes: int, where: str) -> None:
    """Run ``model`` on ``sample`` (eval mode, no grad, training flags restored) and check that
    it gives ``(N, n_classes)`` logits."""
    flags = [(m, m.training) for m in model.modules()]
    hint = (f"make its first layer take {sample.shape[1]} channels and its last layer give "
            f"{n_classes} outputs (torchvision's AlexNet and ResNet are adapted automatically)")
    try:
        with torch.no_grad():
            out = model.eval()(sample)
    except (RuntimeError, ValueError, IndexError, TypeError) as err:
        raise ModelMismatchError(f"{where}: {_one_line(err)}; {hint}.") from err
    finally:
        for module, training in flags:
            module.training = training
    shape = tuple(getattr(out, "shape", ()))
    if shape != (len(sample), n_classes):
        raise ModelMismatchError(f"{where}: it gives outputs of shape {shape} for "
                                 f"{len(sample)} inputs, expected ({len(sample)}, {n_classes}); "
                                 f"{hint}.")


def fit_model(model: nn.Module, sample: torch.Tensor, n_classes: int, *, dataset: str = "data",
              seed: int = 0) -> list[str]:
    """Make ``model`` fit data whose inputs look like ``sample``, in place, or refuse.

    A torchvision AlexNet or ResNet (``AlexNet()``: 3 channels, 224 px, 1000 classes) is adapted
    by the same code that builds ``mcmc-train``'s ``model=alexnet`` / ``resnet18``: stem for
    the channel count and image size, last layer for ``n_classes``. Replaced layers are
    initialized from ``seed`` (the global RNG is left as it was) and, when the model was
    binarized, binarized too, keeping its ``output_scale``. Every model is then run once on
    ``sample`` to check that it gives ``(N, n_classes)`` logits.

    Example:
        >>> import torch, torchvision
        >>> model = binarize_model(torchvision.models.AlexNet())
        >>> fit_model(model, torch.ones(2, 1, 28, 28), 10, dataset="mnist")  # doctest: +ELLIPSIS
        ['features.0: 1-channel 3x3 stride-1 stem (images under 64 px)', ...]

    Args:
        model: Any module, float or binarized; changed in place.
        sample: A few inputs ``(N, C, H, W)`` of the data, on the model's device.
        n_classes: Number of classes of the data.
        dataset: The data's name, for the error message. (default: ``"data"``)
        seed: Seed of the replaced layers' initialization. (default: 0)

    Returns:
        What was changed, one phrase per layer (empty when the model fitted as given).

    Raises:
        ModelMismatchError: If the model does not run on ``sample`` or gives other than
            ``(N, n_classes)`` outputs; one line.
    """
    binary = [m for m in model.modules() if isinstance(m, BinaryLayer)]
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        changes = _adapt_torchvision(model, tuple(sample.shape[1:]), n_classes)
    if changes and binary:
        # Binarize the new float layers only: activations as binarize_model left them.
        binarize_model(model, keep_activations=True, output_scale=binary[-1].output_factor)
    where = (f"model {type(model).__name__} does not fit dataset={dataset} (inputs "
             f"{tuple(sample.shape[1:])}, {n_classes} classes)")
    _check_forward(model, sample, n_classes, where)
    return changes
