"""Any timm model as the network, with the chosen activation / normalization swapped in."""

from __future__ import annotations

import timm
import torch
import torch.nn as nn
from omegaconf import DictConfig

from trainspeed.config_paths import extra_kwargs
from trainspeed.errors import ConfigError
from trainspeed.model.layers import LayerFactory
from trainspeed.model.pretrained import LoadedWeights, create_with_weights, weights_file


def create_timm_model(
    cfg: DictConfig,
    input_shape: tuple[int, ...],
    num_classes: int,
    act_layer: LayerFactory | None,
    norm_layer: LayerFactory | None,
) -> tuple[nn.Module, LoadedWeights | None]:
    """timm.create_model with the head sized to the data and the input channels to the images.

    `model.weights` (a local file) or `model.pretrained` (the local hub cache) load through timm's own pretrained
    loader (see trainspeed.model.pretrained), which adapts the first convolution; the head is always new.
    Returns the model and the record of the loaded weights (None without weights).
    """
    name = cfg.name  # a timm model name (validated)
    kwargs = extra_kwargs(cfg)
    if act_layer is not None:
        kwargs["act_layer"] = act_layer
    if norm_layer is not None:
        kwargs["norm_layer"] = norm_layer
    source = weights_file(cfg)  # model.weights, or model.pretrained from the local hub cache
    create_kwargs = dict(
        num_classes=num_classes, in_chans=input_shape[0], drop_rate=float(cfg.get("drop_rate", 0.0))
    )
    try:
        if source is None:
            return timm.create_model(name, pretrained=False, **create_kwargs, **kwargs), None
        changed = act_layer is not None or norm_layer is not None
        return create_with_weights(name, *source, layers_changed=changed, **create_kwargs, **kwargs)
    except TypeError as err:
        swapped = [k for k in ("act_layer", "norm_layer") if k in kwargs]
        raise ConfigError(
            "model.name",
            name,
            "a timm model that accepts " + " and ".join(swapped or ["these arguments"]),
            problem=str(err),
        ) from err


def check_forward(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Run two dummy samples through the model so an incompatible layer fails now, not in the first step."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros((2, *input_shape)))
    model.train(was_training)
