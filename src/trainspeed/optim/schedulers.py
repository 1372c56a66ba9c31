"""Learning-rate schedules, each stepped per optimizer step or per epoch as it needs."""

from __future__ import annotations

import math
from typing import Any

import torch
from omegaconf import DictConfig
from torch.optim import lr_scheduler


def _cosine(optimizer: torch.optim.Optimizer, cfg: DictConfig, total_steps: int) -> lr_scheduler.LRScheduler:
    """Cosine decay of every parameter group from its own learning rate to min_lr_factor x it, after an optional
    linear warm-up. Written as a factor (LambdaLR) rather than CosineAnnealingLR, whose floor (eta_min) is one
    learning rate for every group: a backbone at finetune.backbone_lr_factor x the head's rate would rise to the
    head's floor instead of decaying to its own."""
    warmup = int(cfg.get("warmup_steps", 0))
    floor = float(cfg.get("min_lr_factor", 0.0))
    span = max(total_steps - warmup, 1)

    def factor(step: int) -> float:
        done = min(step, span) / span
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * done))

    cosine = lr_scheduler.LambdaLR(optimizer, factor)
    if warmup <= 0:
        return cosine
    linear = lr_scheduler.LinearLR(
        optimizer, start_factor=float(cfg.get("warmup_start_factor", 0.01)), total_iters=warmup
    )
    return lr_scheduler.SequentialLR(optimizer, [linear, cosine], milestones=[warmup])


def build_scheduler(
    cfg: DictConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> dict[str, Any] | None:
    """A Lightning lr_scheduler config dict for `scheduler.name`, or None for a constant learning rate.

    total_steps is the run's optimizer-step budget (trainer.estimated_stepping_batches), which the step-wise
    schedules (cosine, onecycle) span.
    """
    name = cfg.name  # one of trainspeed.options.SCHEDULERS (validated)
    if name == "none":
        return None
    if name == "step":
        scheduler = lr_scheduler.StepLR(optimizer, step_size=int(cfg.step_size), gamma=float(cfg.gamma))
    elif name == "exponential":
        scheduler = lr_scheduler.ExponentialLR(optimizer, gamma=float(cfg.gamma))
    elif name == "cosine":
        scheduler = _cosine(optimizer, cfg, total_steps)
    elif name == "onecycle":
        scheduler = lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[g["lr"] * float(cfg.max_lr_factor) for g in optimizer.param_groups],
            total_steps=max(total_steps, 2),
            pct_start=float(cfg.pct_start),
            anneal_strategy=cfg.anneal_strategy,
            div_factor=float(cfg.div_factor),
            final_div_factor=float(cfg.final_div_factor),
        )
    else:  # plateau
        scheduler = lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode=cfg.mode,
            factor=float(cfg.factor),
            patience=int(cfg.patience),
            threshold=float(cfg.threshold),
            min_lr=float(cfg.min_lr),
        )
        return {"scheduler": scheduler, "interval": "epoch", "monitor": cfg.monitor, "strict": False}
    return {"scheduler": scheduler, "interval": cfg.interval, "frequency": 1}
