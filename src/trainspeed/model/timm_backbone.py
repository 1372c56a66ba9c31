"""Any timm model as the network, with the chosen activation / normalization swapped in."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn as nn
from omegaconf import DictConfig

from trainspeed.config_paths import extra_kwargs
from trainspeed.errors import ConfigError, DataError, unknown_name
from trainspeed.model.layers import LayerFactory

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def _check_weights_file(weights: str) -> Path:
    path = Path(weights).expanduser()
    if not path.is_file():
        raise DataError(
            f"model.weights={weights!r}: no such file (expected a {'/'.join(WEIGHT_SUFFIXES)} file)"
        )
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ConfigError("model.weights", weights, "a " + ", ".join(WEIGHT_SUFFIXES) + " file")
    return path


def create_timm_model(
    cfg: DictConfig,
    input_shape: tuple[int, ...],
    num_classes: int,
    act_layer: LayerFactory | None,
    norm_layer: LayerFactory | None,
) -> nn.Module:
    """timm.create_model with the head sized to the data and the input channels to the images.

    `model.weights` loads a local file through timm's own pretrained loader (pretrained_cfg_overlay), which adapts
    the classifier and the first convolution the same way it does for hub weights.
    """
    name = cfg.name
    if not timm.is_model(name):
        raise unknown_name("model.name", name, timm.list_models())
    kwargs = extra_kwargs(cfg)
    if act_layer is not None:
        kwargs["act_layer"] = act_layer
    if norm_layer is not None:
        kwargs["norm_layer"] = norm_layer
    pretrained = bool(cfg.get("pretrained", False))
    if cfg.get("weights"):
        kwargs["pretrained_cfg_overlay"] = {"file": str(_check_weights_file(cfg.weights))}
        pretrained = True
    try:
        model = timm.create_model(
            name,
            pretrained=pretrained,
            num_classes=num_classes,
            in_chans=input_shape[0],
            drop_rate=float(cfg.get("drop_rate", 0.0)),
            **kwargs,
        )
    except TypeError as err:
        swapped = [k for k in ("act_layer", "norm_layer") if k in kwargs]
        raise ConfigError(
            "model.name",
            name,
            "a timm model that accepts " + " and ".join(swapped or ["these arguments"]),
            problem=str(err),
        ) from err
    return model


def check_forward(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Run two dummy samples through the model so an incompatible layer fails now, not in the first step."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros((2, *input_shape)))
    model.train(was_training)
