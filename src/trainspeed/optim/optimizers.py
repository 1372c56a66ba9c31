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
    optimizer = create_optimizer_v2(model_or_groups, **optimizer_kwargs(cfg))
    skip_graph_capture_check(optimizer)
    return optimizer


def skip_graph_capture_check(optimizer: torch.optim.Optimizer) -> None:
    """Drop torch's CUDA-graph-capture check from `step()` when no parameter lives on a GPU.

    Adam, AdamW, RMSprop, NAdam, RAdam, Adamax, ASGD, Rprop, Adadelta and Adafactor ask on every step whether an
    accelerator is available, which nothing caches until CUDA is initialized. Lightning sets
    PYTORCH_NVML_BASED_CUDA_CHECK=1 on import, so each of those steps then loads the NVIDIA management library
    again: about 0.23 ms per step on a CPU-only machine with a CUDA build of torch, paid by those optimizers and
    not by SGD or Adagrad. That would rank optimizers by a probe, not by their work. The check only guards CUDA
    graph capture, which never applies to parameters on the CPU."""
    devices = {p.device.type for group in optimizer.param_groups for p in group["params"]}
    if devices <= {"cpu"} and hasattr(optimizer, "_accelerator_graph_capture_health_check"):
        optimizer._accelerator_graph_capture_health_check = _no_check


def _no_check() -> None:
    return None
