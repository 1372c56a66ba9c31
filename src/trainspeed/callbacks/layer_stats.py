"""Which layers the diagnostics watch, and the statistics of one layer's output, computed on the device.

A watched layer is every Linear and Conv layer. Its activation is the first activation module that follows it in
the network's module order before the next Linear/Conv layer (Linear -> norm -> ReLU -> dropout in the MLP and the
CNN; timm blocks are laid out the same way). A layer with no activation module after it (the classifier head, a
residual shortcut, an activation applied as a function) gets no dead or saturated fraction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

WEIGHTED = (nn.Linear, nn.modules.conv._ConvNd)

# Activations by class name (torch's and timm's classes share the names), lower-cased.
# ReLU family: a unit whose activation input is <= 0 on every example passes nothing on and gets no gradient
# (exactly for ReLU, nearly for its smooth relatives). Every one of them keeps the sign of its input, so `output
# <= 0` is tested, which also holds for in-place activations that overwrite their input.
RELU_FAMILY = frozenset(
    ("relu", "relu6", "leakyrelu", "prelu", "rrelu", "elu", "celu", "selu", "gelu", "gelutanh", "quickgelu")
    + ("silu", "swish", "mish", "hardswish")
)
# Saturating activations: (lower bound, upper bound) of the output.
SATURATING = {"sigmoid": (0.0, 1.0), "hardsigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "hardtanh": (-1.0, 1.0)}
# An output within 1 % of the output range from a bound is saturated: sigmoid < 0.01 or > 0.99, |tanh| > 0.98.
# There the derivative is under 4 % of its maximum for both (sigmoid' = y(1 - y) <= 0.0099 of 0.25,
# tanh' = 1 - y^2 <= 0.04 of 1), so the gradient through the unit has all but vanished.
SATURATION_MARGIN = 0.01


def activation_kind(module: nn.Module) -> str | None:
    """ "dead" for the ReLU family, "saturated" for sigmoid / tanh, None for anything else."""
    name = type(module).__name__.lower()
    if name in RELU_FAMILY:
        return "dead"
    return "saturated" if name in SATURATING else None


@dataclass(frozen=True)
class WatchedLayer:
    position: int  # 0 = nearest the input
    name: str  # module path in the network, e.g. body.1
    module: nn.Module
    activation: nn.Module | None  # the activation module that follows it, if any
    unit_dim: int  # the dimension that indexes units: features (last) for Linear, channels (1) for Conv

    @property
    def activation_stat(self) -> str | None:
        """The statistic its activation gets: dead_fraction (ReLU family), saturated_fraction, or None."""
        kind = activation_kind(self.activation) if self.activation is not None else None
        return None if kind is None else f"{kind}_fraction"


def _short_names(names: list[str]) -> list[str]:
    """Module paths relative to the network: without the LightningModule's attribute holding it (`network.`) and
    without torch.compile's wrapper (`_orig_mod.`)."""
    names = [n.replace("_orig_mod.", "") for n in names]
    heads = {n.split(".", 1)[0] for n in names}
    if len(heads) == 1 and all("." in n for n in names):
        names = [n.split(".", 1)[1] for n in names]
    return names


def watched_layers(model: nn.Module) -> list[WatchedLayer]:
    """Every Linear / Conv layer of `model` in module order, each with the activation that follows it."""
    found: list[tuple[str, nn.Module, nn.Module | None]] = []
    for name, module in model.named_modules():
        if isinstance(module, WEIGHTED):
            found.append((name, module, None))
        elif found and found[-1][2] is None and activation_kind(module) is not None:
            found[-1] = (found[-1][0], found[-1][1], module)
    names = _short_names([name for name, _, _ in found])
    return [
        WatchedLayer(i, short, module, act, 1 if isinstance(module, nn.modules.conv._ConvNd) else -1)
        for i, (short, (_, module, act)) in enumerate(zip(names, found, strict=True))
    ]


def output_stats(output: torch.Tensor) -> torch.Tensor:
    """[mean, std] of a layer's output over the whole batch (every example, unit and position)."""
    std, mean = torch.std_mean(output.detach().float(), correction=0)
    return torch.stack((mean, std))


def dead_fraction(output: torch.Tensor, unit_dim: int) -> torch.Tensor:
    """Fraction of units whose activation is <= 0 on every example (and position) of the batch."""
    y = output.detach().movedim(unit_dim, 0).reshape(output.shape[unit_dim], -1)
    alive = (y > 0).any(dim=1)
    return 1.0 - alive.float().mean()


def saturated_fraction(output: torch.Tensor, activation: nn.Module) -> torch.Tensor:
    """Fraction of the activation's outputs within SATURATION_MARGIN of the output range from a bound."""
    low, high = SATURATING[type(activation).__name__.lower()]
    margin = SATURATION_MARGIN * (high - low)
    y = output.detach()
    return ((y <= low + margin) | (y >= high - margin)).float().mean()


def activation_fraction(output: torch.Tensor, layer: WatchedLayer) -> torch.Tensor:
    """The layer's `activation_stat` for the output of its activation."""
    if layer.activation_stat == "dead_fraction":
        return dead_fraction(output, layer.unit_dim)
    return saturated_fraction(output, layer.activation)
