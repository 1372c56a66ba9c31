"""Divergence guard: stop a run whose training loss went NaN/inf or blew up, and say so in its record."""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


class DivergenceGuard(Callback):
    """Checks the logged training loss (`train/loss` in the trainer's callback metrics) once per logging window:
    the module logs it every `trainer.log_every_n_steps` optimizer steps, so reading it costs one host sync per
    window, not per step.

    Diverged = the loss is NaN/inf once, or above `max_loss_ratio` x the first logged loss for `patience`
    consecutive checks. The run stops; `reason` says why, and the job records status "diverged".
    """

    METRIC = "train/loss"

    def __init__(self, max_loss_ratio: float = 10.0, patience: int = 3) -> None:
        self.max_loss_ratio, self.patience = float(max_loss_ratio), int(patience)
        self.initial_loss: float | None = None
        self.strikes = 0
        self.reason: str | None = None
        self._window = 0  # the logging window (global step // log_every_n_steps) last checked

    @property
    def diverged(self) -> bool:
        return self.reason is not None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx
    ):
        window = trainer.global_step // max(int(trainer.log_every_n_steps or 1), 1)
        if window == self._window:
            return
        loss = trainer.callback_metrics.get(self.METRIC)
        if loss is None:
            return
        self._window = window
        if self.check(float(loss), trainer.global_step):  # one host sync per logging window
            trainer.should_stop = True

    def check(self, value: float, step: int) -> bool:
        """Judge one logged loss; True when the run has diverged (then `reason` says why)."""
        if not math.isfinite(value):
            self.reason = f"training loss became {value} at step {step}"
            return True
        if self.initial_loss is None:
            self.initial_loss = value
            return False
        if value <= self.max_loss_ratio * self.initial_loss:
            self.strikes = 0
            return False
        self.strikes += 1
        if self.strikes < self.patience:
            return False
        self.reason = (
            f"training loss {value:.4g} stayed above {self.max_loss_ratio:g} x the initial "
            f"{self.initial_loss:.4g} for {self.strikes} checks (step {step})"
        )
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"initial_loss": self.initial_loss, "strikes": self.strikes, "reason": self.reason}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.initial_loss = state_dict.get("initial_loss")
        self.strikes = int(state_dict.get("strikes", 0))
        self.reason = state_dict.get("reason")
