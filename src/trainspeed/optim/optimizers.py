"""Optimizers by name through timm's factory."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn
from omegaconf import DictConfig
from timm.optim import create_optimizer_v2
from timm.optim._optim_factory import default_registry

from trainspeed.config_paths import extra_kwargs


def optimizer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The keyword arguments for create_optimizer_v2 that this optimizer takes.

    momentum / betas are passed only to optimizers that have them; timm would otherwise hand its default
    momentum 0.9 to every momentum-capable optimizer (so `optimizer.momentum` is always explicit here).
    """
    name = cfg.name  # a name timm knows (validated)
    info = default_registry.get_optimizer_info(name)
    kwargs: dict[str, Any] = {
        "opt": name,
        "lr": float(cfg.lr),
        "weight_decay": float(cfg.get("weight_decay", 0.0)),
    }
    if info.has_momentum:
        kwargs["momentum"] = float(cfg.get("momentum", 0.9))
    if info.has_betas and cfg.get("betas") is not None:
        kwargs["betas"] = tuple(float(b) for b in cfg.betas)
    if cfg.get("eps") is not None:
        kwargs["eps"] = float(cfg.eps)
    kwargs.update(extra_kwargs(cfg))
    # timm leaves biases and normalization weights (all 1-d tensors) out of weight decay when asked to filter
    kwargs["filter_bias_and_bn"] = not bool(cfg.get("decay_norm_and_bias", False))
    return kwargs


def build_optimizer(
    cfg: DictConfig, model_or_groups: nn.Module | Iterable[dict[str, Any]]
) -> torch.optim.Optimizer:
    """The optimizer named by `optimizer.name` over a model (or explicit parameter groups)."""
    return create_optimizer_v2(model_or_groups, **optimizer_kwargs(cfg))
