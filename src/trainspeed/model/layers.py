"""Activation and normalization layers by name, through timm's factories (one dispatch point for every model)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch.nn as nn
from omegaconf import DictConfig

from trainspeed.options import DEFAULT

LayerFactory = Callable[..., nn.Module]

# timm's registry names, per layout: "vector" normalizes the last dimension (MLP features, transformer tokens),
# "image" normalizes the channels of an N x C x H x W map.
_TIMM_NORM_NAMES = {
    "vector": {"batchnorm": "batchnorm1d", "layernorm": "layernorm", "groupnorm": "groupnorm"},
    "image": {"batchnorm": "batchnorm2d", "layernorm": "layernorm2d", "groupnorm": "groupnorm"},
}


def activation_factory(cfg: DictConfig) -> LayerFactory | None:
    """The activation class (or partial) named by `activation.name`; None for the model's own default."""
    name = cfg.name  # one of trainspeed.options.ACTIVATIONS or default (validated)
    if name == DEFAULT:
        return None
    from timm.layers import get_act_layer  # timm (~1 s to import) only when a layer is swapped in

    layer = get_act_layer(name)
    if name == "leaky_relu":
        return partial(layer, negative_slope=float(cfg.get("negative_slope", 0.01)))
    return layer


def norm_factory(cfg: DictConfig, layout: str) -> LayerFactory | None:
    """A factory `f(num_features) -> nn.Module` for `normalization.name`; None means the model's own default.

    `none` gives nn.Identity, which accepts and ignores the feature count, so any model can drop its norm layers.
    """
    name = cfg.name  # one of trainspeed.options.NORMALIZATIONS or default (validated)
    if name == DEFAULT:
        return None
    if name == "none":
        return nn.Identity
    from timm.layers import get_norm_layer  # timm (~1 s to import) only when a layer is swapped in

    layer = get_norm_layer(_TIMM_NORM_NAMES[layout][name])
    if name == "batchnorm":
        return partial(layer, momentum=float(cfg.get("momentum", 0.1)))
    if name == "groupnorm":
        return partial(layer, num_groups=int(cfg.num_groups))
    return layer


def init_gain_args(activation_name: str, negative_slope: float = 0.01) -> tuple[str, float | None]:
    """(nonlinearity, param) for torch.nn.init.calculate_gain, following the activation in use.

    calculate_gain knows relu, leaky_relu, tanh, sigmoid and selu. The smooth ReLU relatives (elu, gelu, silu, mish)
    behave like ReLU for the variance argument, so they take its gain. SELU takes gain 1 (LeCun scaling), which its
    self-normalizing fixed point assumes, instead of torch's empirical 3/4.
    """
    if activation_name in ("tanh", "sigmoid"):
        return activation_name, None
    if activation_name == "leaky_relu":
        return "leaky_relu", negative_slope
    if activation_name == "selu":
        return "linear", None
    return "relu", None
