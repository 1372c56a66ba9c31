"""Weight initialization schemes for every Linear and Conv layer, each as its paper defines it.

A name means its paper: `xavier_*` is Glorot & Bengio (2010), Var = 2/(fan_in+fan_out), gain 1; `kaiming_*` is
He et al. (2015), Var = gain²/fan_in with the activation's gain (their definition); `lecun_normal` is LeCun et al.
(1998), Var = 1/fan_in; `orthogonal` is Saxe et al. (2014), an orthogonal matrix, gain 1. Giving every scheme the
activation's gain (√2 for ReLU) silently turns Glorot's init into He's on square layers, and then a comparison of
the two shows nothing. The gain-matched variants stay available by explicit choice: `initializer.gain=auto` (the
activation's gain, for every scheme) or a number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn as nn
from omegaconf import DictConfig

from trainspeed.model.layers import init_gain_args

WEIGHTED = (nn.Linear, nn.modules.conv._ConvNd)
NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
AUTO = "auto"
# schemes whose paper scales by the activation's gain; the others use gain 1 unless `initializer.gain` says otherwise
GAIN_FROM_ACTIVATION = ("kaiming_uniform", "kaiming_normal")


def resolve_gain(
    name: str, gain: float | str | None, activation_name: str, negative_slope: float = 0.01
) -> float:
    """The gain a scheme uses: the paper's (gain=None), the activation's (gain="auto"), or the number given.

    The activation's gain is torch's `calculate_gain`, with SELU at 1 (LeCun scaling, which its self-normalizing
    fixed point assumes) and the smooth ReLU relatives at ReLU's √2 (see layers.init_gain_args).
    """
    if gain is None:
        gain = AUTO if name in GAIN_FROM_ACTIVATION else 1.0
    if gain == AUTO:
        nonlinearity, param = init_gain_args(activation_name, negative_slope)
        return nn.init.calculate_gain(nonlinearity, param)
    return float(gain)


def _init_weight(weight: torch.Tensor, name: str, gain: float, std: float) -> None:
    if name == "xavier_uniform":
        nn.init.xavier_uniform_(weight, gain=gain)
    elif name == "xavier_normal":
        nn.init.xavier_normal_(weight, gain=gain)
    elif name in ("kaiming_uniform", "kaiming_normal"):
        # torch's kaiming_* take (nonlinearity, a) rather than a gain; this is their arithmetic for a given gain
        std = gain / math.sqrt(nn.init._calculate_fan_in_and_fan_out(weight)[0])
        if name == "kaiming_normal":
            weight.normal_(0.0, std)
        else:
            weight.uniform_(-math.sqrt(3.0) * std, math.sqrt(3.0) * std)
    elif name == "lecun_normal":
        from timm.layers import variance_scaling_  # timm (~1 s to import) only for the schemes that use it

        # timm's lecun_normal_ is this with scale 1: a normal cut at ±2 std, rescaled to variance scale / fan_in
        variance_scaling_(weight, scale=gain**2, mode="fan_in", distribution="truncated_normal")
    elif name == "orthogonal":
        nn.init.orthogonal_(weight, gain=gain)
    elif name == "trunc_normal":
        from timm.layers import trunc_normal_  # timm (~1 s to import) only for the schemes that use it

        trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def initialize(
    modules: Iterable[nn.Module], cfg: DictConfig, activation_name: str, negative_slope: float = 0.01
) -> int:
    """Initialize the given modules in place; returns how many weight tensors were set.

    Linear/Conv weights follow `initializer.name` at the gain `resolve_gain` gives, biases start at zero,
    normalization layers at weight 1 / bias 0. `default` leaves everything as the framework made it.
    """
    name = cfg.name  # one of trainspeed.options.INITIALIZERS (validated)
    if name == "default":
        return 0
    gain = resolve_gain(name, cfg.get("gain"), activation_name, negative_slope)
    count = 0
    with torch.no_grad():
        for module in modules:
            if isinstance(module, WEIGHTED):
                _init_weight(module.weight, name, gain, float(cfg.get("std", 0.02)))
                count += 1
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, NORMS) and getattr(module, "weight", None) is not None:
                nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
    return count
