"""The weights of ``K`` binary MLPs of one architecture, stacked ``[K, out, in]`` per layer
(:class:`StackedMLP`), and their loss and accuracy on a split at once (:func:`evaluate_stacked`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from mcmc_core.data import Split
from mcmc_core.energy import cross_entropy_t, device_of, needs_shift
from mcmc_core.layers import OUTPUT_SCALE, BinaryLayer, BinaryLinear, sign
from mcmc_core.models import ModelConfig, build_model

__all__ = ["StackedMLP", "evaluate_stacked"]

# Leaf modules that are the identity on a 2-D activation in eval mode (energies run in eval).
_PASS_THROUGH = (nn.Flatten, nn.Identity, nn.Dropout)


class StackedMLP:
    """``K`` binary MLPs (``Flatten`` and :class:`~mcmc_core.layers.BinaryLinear` layers) whose
    layer ``l`` weights are one ±1 float32 tensor ``[K, out_l, in_l]``.

    Layer ``l`` maps the ±1 input ``A_l`` to the integer pre-activation ``Z_l = W_l A_l``;
    ``A_{l+1} = sign(Z_l)`` and the logits are ``Z_last * scale`` with
    ``scale = output_scale / sqrt(in_last)`` (hidden layers' scales do not change any sign and
    are not applied). This is exactly what :func:`~mcmc_core.models.build_model` builds for
    ``ModelConfig(name="mlp", hidden=..., output_scale=...)``, and :meth:`export` returns such a
    model.

    Args:
        weights: one ``[K, out_l, in_l]`` ±1 tensor per layer, ``in_{l+1} == out_l``.
        input_shape: ``(C, H, W)`` of one input, ``C * H * W == in_0``.
        output_scale: the last layer's output factor (the model's ``output_scale``).
    """

    def __init__(self, weights: Sequence[Tensor], input_shape: Sequence[int],
                 output_scale: float = OUTPUT_SCALE) -> None:
        if not weights:
            raise ValueError("weights must hold at least one layer.")
        k = weights[0].shape[0]
        for i, w in enumerate(weights):
            if w.dim() != 3 or w.shape[0] != k:
                raise ValueError(f"weights[{i}] must be [K={k}, out, in], but got "
                                 f"{tuple(w.shape)}.")
            if i and w.shape[2] != weights[i - 1].shape[1]:
                raise ValueError(f"weights[{i}] takes {w.shape[2]} inputs, but layer {i - 1} "
                                 f"has {weights[i - 1].shape[1]} outputs.")
        if math.prod(input_shape) != weights[0].shape[2]:
            raise ValueError(f"input_shape {tuple(input_shape)} does not give the "
                             f"{weights[0].shape[2]} inputs of layer 0.")
        if not output_scale > 0:
            raise ValueError(f"output_scale must be positive, but got {output_scale=}.")
        self.weights = [w.to(torch.float32).contiguous() for w in weights]
        self.input_shape = tuple(int(d) for d in input_shape)
        self.output_scale = float(output_scale)
        # The same float as BinaryLayer.set_output_factor computes.
        self.scale = self.output_scale / math.sqrt(self.weights[-1].shape[2])

    @classmethod
    def build(cls, input_shape: Sequence[int], hidden: Sequence[int], n_classes: int,
              seeds: Sequence[int], *, output_scale: float = OUTPUT_SCALE,
              device: torch.device | str = "cpu", init: str = "random",
              inputs: Tensor | None = None) -> StackedMLP:
        """Chain ``k`` gets the weights of ``build_model(ModelConfig("mlp", hidden,
        output_scale=output_scale, init=init), input_shape, n_classes, seed=seeds[k],
        inputs=inputs)``."""
        cfg = ModelConfig(name="mlp", hidden=list(hidden), output_scale=output_scale, init=init)
        models = [build_model(cfg, input_shape, n_classes, seed=int(s), inputs=inputs)
                  for s in seeds]
        return cls.from_models(models, input_shape, device=device)

    @classmethod
    def from_models(cls, models: Sequence[nn.Module], input_shape: Sequence[int], *,
                    device: torch.device | str = "cpu") -> StackedMLP:
        """Stack the weights of binary MLPs of one architecture (e.g. from ``build_model``).

        Every leaf module must be a ``BinaryLinear``, ``Flatten``, ``Identity`` or ``Dropout``,
        the layers applied in module order; hidden layers must have output factor 1 and all
        models the same last-layer output factor (``output_scale``).
        """
        if not models:
            raise ValueError("models must not be empty.")
        per_model = [_linear_layers(m) for m in models]
        shapes = [[tuple(layer.weight.shape) for layer in layers] for layers in per_model]
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"the models have different architectures: {shapes[0]} vs others.")
        factors = {layers[-1].output_factor for layers in per_model}
        if len(factors) != 1:
            raise ValueError(f"the models have different output scales: {sorted(factors)}.")
        weights = [torch.stack([layers[i].weight.detach() for layers in per_model]).to(device)
                   for i in range(len(per_model[0]))]
        stacked = cls(weights, input_shape, factors.pop())
        # The layers' order in ``forward`` is not visible from the modules: compare outputs.
        probe = torch.randn(4, *stacked.input_shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ours = stacked.logits_t(sign(probe.flatten(1)).t().to(device))
            for k, model in enumerate(models):
                training = model.training
                theirs = model.eval()(probe.to(device_of(model)))
                model.train(training)
                if not torch.equal(theirs.t().to(ours.device), ours[k]):
                    raise ValueError(f"models[{k}] does not compute a plain binary MLP "
                                     "(Flatten, then its BinaryLinear layers in order).")
        return stacked

    # ----------------------------------------------------------------------------- properties
    def __len__(self) -> int:
        return self.weights[0].shape[0]

    @property
    def widths(self) -> list[int]:
        """``[in_0, out_0, out_1, ...]``: input size, hidden widths, classes."""
        return [self.weights[0].shape[2], *(w.shape[1] for w in self.weights)]

    @property
    def hidden(self) -> list[int]:
        """Hidden layer widths (``ModelConfig.hidden``)."""
        return self.widths[1:-1]

    @property
    def n_classes(self) -> int:
        """Number of logits."""
        return self.widths[-1]

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return self.weights[0].device

    def keep(self, index: Tensor) -> None:
        """Keep the chains at ``index`` (1-D int64), in that order."""
        self.weights = [w[index].contiguous() for w in self.weights]

    # ----------------------------------------------------------------------------- use
    @torch.no_grad()
    def preactivations(self, a0_t: Tensor,
                       activation: Callable[[Tensor, int], Tensor] | None = None) -> list[Tensor]:
        """Every layer's integer pre-activations ``Z_l``, ``[K, out_l, N]``, for the ±1 inputs
        ``a0_t`` (``[in_0, N]``, transposed). Exact: integer sums of ±1 products. Hidden units
        are ``sign(Z_l)``, or ``activation(Z_l, l)`` (integers: the energy's
        :class:`~mcmc_core.population.ChainCache` activation)."""
        pres, act = [], a0_t
        for i, w in enumerate(self.weights):
            pres.append(torch.matmul(w, act))  # [K, out, N]
            if i < len(self.weights) - 1:
                act = sign(pres[-1]) if activation is None else activation(pres[-1], i)
        return pres

    def needs_shift(self) -> bool:
        """Whether logits can exceed about 80 in size (``|Z| <= fan_in``): then ``exp`` needs
        the max subtracted (:func:`~mcmc_core.energy.needs_shift`)."""
        return needs_shift(self.scale * self.weights[-1].shape[2])

    def logits_t(self, a0_t: Tensor) -> Tensor:
        """Logits ``[K, classes, N]`` of every chain for ±1 inputs ``a0_t`` (``[in_0, N]``)."""
        return self.preactivations(a0_t)[-1] * self.scale

    def model_config(self) -> ModelConfig:
        """The ``ModelConfig`` whose ``build_model`` gives this architecture."""
        return ModelConfig(name="mlp", hidden=self.hidden, output_scale=self.output_scale)

    @torch.no_grad()
    def export(self, k: int) -> nn.Module:
        """Chain ``k`` as an ordinary binary model: the ``MLP`` that
        :func:`~mcmc_core.models.build_model` builds for :meth:`model_config`, on CPU, in eval
        mode, holding (a copy of) chain ``k``'s weights."""
        model = build_model(self.model_config(), self.input_shape, self.n_classes)
        return self.write(k, model).eval()

    @torch.no_grad()
    def write(self, k: int, model: nn.Module) -> nn.Module:
        """Copy chain ``k``'s weights into ``model``, a binary MLP of this architecture (one
        :meth:`from_models` accepts); returns it."""
        k = range(len(self))[k]  # negative indices, bounds check
        layers = _linear_layers(model)
        if [tuple(layer.weight.shape) for layer in layers] != [tuple(w.shape[1:])
                                                               for w in self.weights]:
            raise ValueError("the model has another architecture than the stacked chains.")
        for layer, w in zip(layers, self.weights):
            layer.weight.copy_(w[k])
        return model


def _linear_layers(model: nn.Module) -> list[BinaryLinear]:
    layers: list[BinaryLinear] = []
    for module in model.modules():
        if isinstance(module, BinaryLinear):
            layers.append(module)
        elif isinstance(module, BinaryLayer):
            raise ValueError(f"only binary MLPs can be stacked, but the model has a "
                             f"{type(module).__name__}.")
        elif not module._modules and not isinstance(module, _PASS_THROUGH):
            raise ValueError(f"only binary MLPs can be stacked, but the model has a "
                             f"{type(module).__name__}.")
    if not layers:
        raise ValueError("the model has no BinaryLinear layer.")
    if any(layer.output_factor != 1.0 for layer in layers[:-1]):
        raise ValueError("hidden layers must have output factor 1 (as binarize_model sets).")
    return layers


@torch.no_grad()
def evaluate_stacked(net: StackedMLP, split: Split,
                     batch_size: int = 4096) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy and accuracy of every chain on ``split``: float64 ``[K]`` each.

    Chunks of ``batch_size`` samples are binarized and run through all chains at once (one
    batched matmul per layer). An empty split gives NaNs.
    """
    k, n = len(net), len(split)
    loss_sum = torch.zeros(k, dtype=torch.float64, device=net.device)
    correct = torch.zeros(k, dtype=torch.int64, device=net.device)
    shift = net.needs_shift()
    for start in range(0, n, batch_size):
        x = split.inputs[start : start + batch_size].to(net.device, torch.float32)
        y = split.targets[start : start + batch_size].to(net.device)
        z = net.preactivations(sign(x.flatten(1)).t().contiguous())[-1]  # [K, classes, B]
        loss_sum += cross_entropy_t(z * net.scale, y, shift=shift).sum(1, dtype=torch.float64)
        correct += (z.argmax(1) == y).sum(1)
    if n == 0:
        nan = torch.full((k,), float("nan"), dtype=torch.float64)
        return nan, nan.clone()
    return loss_sum / n, correct.to(torch.float64) / n
