"""The network: model family + activation + normalization + initializer, composed from their config groups."""

from __future__ import annotations

import torch.nn as nn
from omegaconf import DictConfig

from trainspeed.errors import ConfigError
from trainspeed.model.cnn import SmallCNN
from trainspeed.model.initializers import initialize
from trainspeed.model.layers import activation_factory, norm_factory
from trainspeed.model.mlp import MLP
from trainspeed.model.pretrained import LoadedWeights, model_config, modules_to_initialize, report_loaded


def _own_norm(factory):
    """For our own models, `none` means no layer at all rather than an Identity placeholder."""
    return None if factory is nn.Identity else factory


def build_network(
    cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int
) -> tuple[nn.Module, LoadedWeights | None]:
    """Build the network described by cfg.model / activation / normalization / initializer for this data.

    Returns the network and the record of the pretrained weights loaded into it (None when built from scratch),
    which the fine-tuning strategies need to tell the backbone from the new layers."""
    family = cfg.model.family
    weights = None
    act = activation_factory(cfg.activation)
    if family == "mlp":
        norm = _own_norm(norm_factory(cfg.normalization, "vector"))
        m = cfg.model
        network = MLP(input_shape, num_classes, m.depth, m.width, m.dropout, act or nn.ReLU, norm)
    elif family == "cnn":
        norm = norm_factory(cfg.normalization, "image")
        norm = nn.BatchNorm2d if norm is None else _own_norm(norm)
        m = cfg.model
        network = SmallCNN(
            input_shape, num_classes, m.channels, m.convs_per_stage, m.pool, m.dropout, act or nn.ReLU, norm
        )
    else:  # timm (model.family is one of trainspeed.options.FAMILIES, validated)
        network, weights = _build_timm(cfg, input_shape, num_classes, act)
    activation = cfg.activation.name if cfg.activation.name != "default" else "relu"
    # with pretrained weights only the new layers (the head) are initialized, never the loaded ones
    initialize(
        modules_to_initialize(network, weights),
        cfg.initializer,
        activation,
        float(cfg.activation.get("negative_slope", 0.01)),
    )
    report_loaded(weights, cfg.activation.name, cfg.normalization.name)
    return network, weights


def _build_timm(
    cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int, act
) -> tuple[nn.Module, LoadedWeights | None]:
    """Image-layout norm layers suit conv backbones; transformers normalize tokens (last dim), so try both."""
    # timm (~1 s to import) only for model=timm; an MLP or CNN run does not load it
    from trainspeed.model.timm_backbone import check_forward, create_timm_model

    errors = []
    for layout in ("image", "vector"):
        norm = norm_factory(cfg.normalization, layout)
        try:
            network, weights = create_timm_model(model_config(cfg), input_shape, num_classes, act, norm)
            check_forward(network, input_shape)
            return network, weights
        except (RuntimeError, ValueError) as err:
            if isinstance(err, ConfigError):
                raise
            errors.append(str(err).splitlines()[0])
            if norm is None:
                break
    raise ConfigError(
        "normalization",
        cfg.normalization.name,
        f"a normalization that timm model {cfg.model.name!r} can take (with activation={cfg.activation.name!r}, "
        f"input {list(input_shape)})",
        problem=errors[-1][:200],
    )
