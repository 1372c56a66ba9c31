"""Fine-tuning a pretrained backbone: which parameters train, at which learning rate, and from which epoch.

Strategies (the `finetune` config group):
  full          every layer trains; the pretrained backbone at optimizer.lr x backbone_lr_factor
  linear_probe  only the new head trains; the backbone is frozen throughout
  gradual       the head trains alone for `unfreeze_epoch` epochs, then the backbone joins at its own lr factor
  scratch       the baseline: the weights are not loaded at all (see trainspeed.model.pretrained.model_config)

Frozen means frozen: no gradient (requires_grad=False, which also skips the backbone's backward pass), no place in
the optimizer (linear_probe) and batch-norm layers in eval mode, so their running statistics stay as loaded.

Lightning's BaseFinetuning is not used: it freezes batch norm by turning off `track_running_stats`, so a frozen
backbone still normalizes training batches with their own statistics (features differ between training and
evaluation), and it adds the backbone to the optimizer mid-run, which learning-rate schedulers built at the start
do not know about. Here `gradual` puts the backbone's parameter group in the optimizer from the start; its
tensors get no gradient before the unfreeze epoch, and optimizers skip parameters without one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
import torch.nn as nn
from omegaconf import DictConfig

from trainspeed.errors import ConfigError
from trainspeed.model.pretrained import LoadedWeights
from trainspeed.optim.optimizers import optimizer_kwargs, split_for_weight_decay
from trainspeed.options import NEEDS_WEIGHTS

log = logging.getLogger(__name__)

NO_WEIGHTS_HINT = "model=timm with model.pretrained=true or model.weights=FILE"

Named = list[tuple[str, nn.Parameter]]


@dataclass
class FinetunePlan:
    """The head / backbone split of a network with pretrained weights, and how each part trains."""

    strategy: str
    head: Named
    backbone: Named
    norms: list[nn.Module]  # normalization layers whose running statistics were loaded
    backbone_lr_factor: float = 1.0
    unfreeze_epoch: int = 0
    no_weight_decay: set[str] = field(default_factory=set)
    frozen: bool = False

    def freeze(self) -> None:
        """Stop gradients into the backbone; its norm layers go to eval mode when training starts."""
        for _, param in self.backbone:
            param.requires_grad_(False)
        self.frozen = True

    def unfreeze(self) -> None:
        for _, param in self.backbone:
            param.requires_grad_(True)
        for module in self.norms:
            module.train()
        self.frozen = False

    def keep_frozen_norms_in_eval(self) -> None:
        if self.frozen:
            for module in self.norms:
                module.eval()

    def param_groups(self, optimizer_cfg: DictConfig) -> list[dict[str, Any]]:
        """Parameter groups for the optimizer: the head at optimizer.lr first, then the backbone at lr x factor
        (none for linear_probe); each split into weight-decay / no-decay groups the way timm splits a model."""
        kwargs = optimizer_kwargs(optimizer_cfg)
        lr, weight_decay, exclude_1d = kwargs["lr"], kwargs["weight_decay"], kwargs["filter_bias_and_bn"]
        parts = [("head", self.head, lr)]
        if self.strategy != "linear_probe":
            parts.append(("backbone", self.backbone, lr * self.backbone_lr_factor))
        groups = []
        for label, params, group_lr in parts:
            decay, no_decay = split_for_weight_decay(params, weight_decay, exclude_1d, self.no_weight_decay)
            if decay:
                groups.append({"params": decay, "lr": group_lr, "weight_decay": weight_decay, "name": label})
            if no_decay:
                name = f"{label}/no_decay" if decay else label
                groups.append({"params": no_decay, "lr": group_lr, "weight_decay": 0.0, "name": name})
        return groups

    def callbacks(self) -> list[pl.Callback]:
        return [FinetuneCallback(self)]


class FinetuneCallback(pl.Callback):
    """Keeps frozen batch-norm layers in eval mode and, for `gradual`, unfreezes the backbone at its epoch."""

    def __init__(self, plan: FinetunePlan) -> None:
        self.plan = plan

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.plan.strategy == "gradual" and trainer.world_size > 1:
            raise ConfigError(
                "finetune",
                "gradual",
                "finetune=full (with finetune.backbone_lr_factor) or linear_probe when training on several devices",
                problem="DistributedDataParallel does not follow parameters unfrozen during training",
            )

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        plan = self.plan
        if plan.strategy == "gradual" and plan.frozen and trainer.current_epoch >= plan.unfreeze_epoch:
            plan.unfreeze()
            log.info("finetune=gradual: backbone unfrozen at epoch %d", trainer.current_epoch)
        # Lightning runs each epoch in train mode (restoring modes after validation); frozen norms stay in eval
        plan.keep_frozen_norms_in_eval()


def _number(cfg: DictConfig, key: str, default: float, accepted: str, ok) -> float:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok(value):
        raise ConfigError(f"finetune.{key}", value, accepted)
    return value


def plan_finetune(
    cfg: DictConfig | None, network: nn.Module, record: LoadedWeights | None
) -> FinetunePlan | None:
    """The plan for `cfg.finetune` on this network, with the backbone frozen where the strategy says so.
    `record`: the pretrained weights build_network loaded into it (None: built from scratch).

    None when every parameter simply trains at optimizer.lr (no weights loaded, or `full` with factor 1), so the
    optimizer is built from the whole network as usual.
    """
    if cfg is None:
        return None
    strategy = cfg.get("name")  # one of trainspeed.options.FINETUNE_STRATEGIES (validated)
    factor = float(_number(cfg, "backbone_lr_factor", 1.0, "a number > 0", lambda v: v > 0))
    unfreeze_epoch = int(
        _number(cfg, "unfreeze_epoch", 0, "an integer >= 0", lambda v: v >= 0 and v % 1 == 0)
    )
    raw = getattr(network, "_orig_mod", network)  # torch.compile wraps the network
    if record is None:
        if strategy in NEEDS_WEIGHTS:
            raise ConfigError(
                "finetune",
                strategy,
                f"full or scratch for a network without weights, or load weights: {NO_WEIGHTS_HINT}",
                problem=f"{strategy} keeps the backbone as loaded, but no weights are loaded",
            )
        if strategy == "full" and factor != 1.0:
            raise ConfigError(
                "finetune.backbone_lr_factor",
                factor,
                f"1.0 for a network without weights, or load weights: {NO_WEIGHTS_HINT}",
                problem="it scales the learning rate of pretrained layers, and none are loaded",
            )
        return None
    if strategy == "scratch" or (strategy == "full" and factor == 1.0):
        return None
    named = list(raw.named_parameters())
    backbone = [(n, p) for n, p in named if n in record.loaded]
    head = [(n, p) for n, p in named if n not in record.loaded]
    norms = [
        module
        for prefix, module in raw.named_modules()
        if isinstance(module, nn.modules.batchnorm._NormBase) and f"{prefix}.running_mean" in record.loaded
    ]
    no_weight_decay = set(getattr(raw, "no_weight_decay", lambda: set())())
    plan = FinetunePlan(strategy, head, backbone, norms, factor, unfreeze_epoch, no_weight_decay)
    if strategy == "linear_probe" or (strategy == "gradual" and unfreeze_epoch > 0):
        plan.freeze()
    how = "frozen" if plan.frozen else f"lr x {factor:g}"
    log.info("finetune=%s: %d backbone tensors (%s), %d new ones", strategy, len(backbone), how, len(head))
    return plan
