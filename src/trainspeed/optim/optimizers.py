"""Optimizers by name, with timm's names and defaults.

The optimizers torch has (SGD and its momentum / Nesterov forms, Adam, AdamW, Adagrad, Adadelta, Adamax, NAdam,
RAdam, RMSprop) are built here exactly as timm's factory builds them (same class, parameter groups and defaults;
tests/test_network_build.py compares the two); the others (lamb, lion, ...) through timm's factory. Why not timm for
all: importing any part of timm imports all of it, about 1 s of every run's start-up, for a table lookup.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from omegaconf import DictConfig

from trainspeed.config_paths import extra_kwargs
from trainspeed.errors import ConfigError


@dataclass(frozen=True)
class TorchOptimizer:
    """What timm's registry says of one of torch's optimizers (timm.optim._optim_factory's OptimInfo)."""

    cls: type[torch.optim.Optimizer]
    defaults: dict[str, Any] = field(default_factory=dict)
    has_momentum: bool = False
    has_eps: bool = True
    has_betas: bool = False


TORCH_OPTIMIZERS = {
    "sgd": TorchOptimizer(torch.optim.SGD, {"nesterov": True}, has_momentum=True, has_eps=False),
    "momentum": TorchOptimizer(torch.optim.SGD, {"nesterov": False}, has_momentum=True, has_eps=False),
    "nesterov": TorchOptimizer(torch.optim.SGD, {"nesterov": True}, has_momentum=True, has_eps=False),
    "adam": TorchOptimizer(torch.optim.Adam, has_betas=True),
    "adamw": TorchOptimizer(torch.optim.AdamW, has_betas=True),
    "adagrad": TorchOptimizer(torch.optim.Adagrad, {"eps": 1e-8}),
    "adadelta": TorchOptimizer(torch.optim.Adadelta),
    "adamax": TorchOptimizer(torch.optim.Adamax, has_betas=True),
    "nadam": TorchOptimizer(torch.optim.NAdam, has_betas=True),
    "radam": TorchOptimizer(torch.optim.RAdam, has_betas=True),
    "rmsprop": TorchOptimizer(torch.optim.RMSprop, {"alpha": 0.9}, has_momentum=True),
}


def _info(name: str) -> TorchOptimizer | Any:
    if name in TORCH_OPTIMIZERS:
        return TORCH_OPTIMIZERS[name]
    # timm (~1 s to import) for its own optimizers only
    from timm.optim._optim_factory import default_registry

    return default_registry.get_optimizer_info(name)


def typed_keys(group: str) -> list[str]:
    """The keys of `group` given on the command line (Hydra's task overrides: `+optimizer.momentum=0.5` ->
    momentum); empty outside a Hydra job. What an option file or a preset sets is not among them."""
    from hydra.core.hydra_config import HydraConfig

    from trainspeed.record.run_folder import override_key

    if not HydraConfig.initialized():
        return []
    keys = (override_key(str(o)) for o in HydraConfig.get().overrides.task)
    return list(
        dict.fromkeys(key.split(".", 1)[1] for key in keys if key.startswith(f"{group}."))
    )  # typed order


def check_typed_settings(cfg: DictConfig, info: TorchOptimizer | Any) -> None:
    """momentum / betas / eps given on the command line to an optimizer without one: left out of its arguments
    below (as timm's factory leaves them), they would be ignored without a word. The same keys from an option
    file (adam's betas under `optimizer.name=adagrad`) are left out quietly, as before."""
    for key in typed_keys("optimizer"):
        has = getattr(info, f"has_{key}", True) if key in ("momentum", "betas", "eps") else True
        if not has and cfg.get(key) is not None:
            having = [n for n, o in TORCH_OPTIMIZERS.items() if getattr(o, f"has_{key}")]
            raise ConfigError(
                f"optimizer.{key}",
                cfg.get(key),
                f"an optimizer with {key} ({', '.join(having)}, ...), or no optimizer.{key}",
                problem=f"optimizer.name={cfg.name} has no {key}",
            )


def optimizer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The keyword arguments for create_optimizer_v2 that this optimizer takes.

    momentum / betas are passed only to optimizers that have them; timm would otherwise hand its default
    momentum 0.9 to every momentum-capable optimizer (so `optimizer.momentum` is always explicit here).
    """
    name = cfg.name  # a name timm knows (validated)
    info = _info(name)
    check_typed_settings(cfg, info)
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
    kwargs = optimizer_kwargs(cfg)
    try:
        if kwargs["opt"] in TORCH_OPTIMIZERS and not hasattr(model_or_groups, "no_weight_decay"):
            optimizer = torch_optimizer(model_or_groups, **kwargs)
        else:  # timm's own optimizers, and timm models (which name parameters to keep out of weight decay)
            from timm.optim import create_optimizer_v2

            optimizer = create_optimizer_v2(model_or_groups, **kwargs)
    except (
        TypeError,
        ValueError,
    ) as err:  # an argument of optimizer.kwargs the class does not take, or refuses
        given = extra_kwargs(cfg)
        if not given:
            raise
        accepted = f"keyword arguments the {kwargs['opt']} optimizer takes, with values it accepts"
        raise ConfigError("optimizer.kwargs", given, accepted, problem=str(err).splitlines()[0]) from None
    skip_graph_capture_check(optimizer)
    return optimizer


def torch_optimizer(
    model_or_groups: nn.Module | Iterable[dict[str, Any]],
    opt: str,
    lr: float,
    weight_decay: float,
    filter_bias_and_bn: bool,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """One of torch's optimizers as timm's create_optimizer_v2 builds it: a model's parameters split into a
    no-decay group (biases and other 1-d tensors when filtering, everything without weight decay) and a decay
    group; the registry's defaults; momentum, eps and betas only where the optimizer has them."""
    info = TORCH_OPTIMIZERS[opt]
    params: Any = model_or_groups
    if isinstance(model_or_groups, nn.Module):
        params = weight_decay_groups(model_or_groups, weight_decay, filter_bias_and_bn)
        weight_decay = 0.0
    args: dict[str, Any] = {"weight_decay": weight_decay, **kwargs, "lr": lr}
    for key, value in info.defaults.items():
        args.setdefault(key, value)
    if info.has_momentum:
        args.setdefault("momentum", 0.9)
    if not info.has_eps:
        args.pop("eps", None)
    if not info.has_betas:
        args.pop("betas", None)
    return info.cls(params, **args)


def split_for_weight_decay(
    named_params: Iterable[tuple[str, torch.Tensor]],
    weight_decay: float,
    exclude_1d: bool,
    excluded_names: Iterable[str] = (),
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """timm's rule, as (decay, no_decay): no parameter decays when weight_decay is 0; else 1-d tensors and biases
    are kept out when `exclude_1d`, and so are the names matching a pattern of `excluded_names` (fnmatch)."""
    patterns = list(excluded_names)
    decay, no_decay = [], []
    for name, param in named_params:
        excluded = (exclude_1d and (param.ndim <= 1 or name.endswith(".bias"))) or any(
            fnmatch.fnmatch(name, pattern) for pattern in patterns
        )
        (no_decay if not weight_decay or excluded else decay).append(param)
    return decay, no_decay


def weight_decay_groups(model: nn.Module, weight_decay: float, exclude_1d: bool) -> list[dict[str, Any]]:
    """timm's param_groups_weight_decay: the model's trainable parameters without weight decay, then those with
    it (split_for_weight_decay); empty groups left out."""
    trainable = ((name, param) for name, param in model.named_parameters() if param.requires_grad)
    decay, no_decay = split_for_weight_decay(trainable, weight_decay, exclude_1d)
    groups = []
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    return groups


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
