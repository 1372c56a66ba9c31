"""Weight initialization schemes for every Linear and Conv layer, with gains that follow the activation."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn
from omegaconf import DictConfig
from timm.layers import lecun_normal_, trunc_normal_

from trainspeed.model.layers import init_gain_args

WEIGHTED = (nn.Linear, nn.modules.conv._ConvNd)
NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def _init_weight(weight: torch.Tensor, name: str, nonlinearity: str, param: float | None, std: float) -> None:
    gain = nn.init.calculate_gain(nonlinearity, param)
    if name == "xavier_uniform":
        nn.init.xavier_uniform_(weight, gain=gain)
    elif name == "xavier_normal":
        nn.init.xavier_normal_(weight, gain=gain)
    elif name in ("kaiming_uniform", "kaiming_normal"):
        fn = nn.init.kaiming_uniform_ if name == "kaiming_uniform" else nn.init.kaiming_normal_
        # kaiming_* takes its gain from (nonlinearity, a); "linear" gives gain 1 (SELU's LeCun scaling)
        fn(weight, a=param or 0.0, mode="fan_in", nonlinearity=nonlinearity)
    elif name == "lecun_normal":
        lecun_normal_(weight)
    elif name == "orthogonal":
        nn.init.orthogonal_(weight, gain=gain)
    elif name == "trunc_normal":
        trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def initialize(
    modules: Iterable[nn.Module], cfg: DictConfig, activation_name: str, negative_slope: float = 0.01
) -> int:
    """Initialize the given modules in place; returns how many weight tensors were set.

    Linear/Conv weights follow `initializer.name` with the activation's gain, biases start at zero, normalization
    layers at weight 1 / bias 0. `default` leaves everything as the framework made it.
    """
    name = cfg.name  # one of trainspeed.options.INITIALIZERS (validated)
    if name == "default":
        return 0
    nonlinearity, param = init_gain_args(activation_name, negative_slope)
    count = 0
    with torch.no_grad():
        for module in modules:
            if isinstance(module, WEIGHTED):
                _init_weight(module.weight, name, nonlinearity, param, float(cfg.get("std", 0.02)))
                count += 1
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, NORMS) and getattr(module, "weight", None) is not None:
                nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
    return count
