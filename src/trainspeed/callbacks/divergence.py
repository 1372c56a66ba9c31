"""Divergence guard: stop a run whose training loss went NaN/inf or blew up, and say so in its record."""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


class DivergenceGuard(Callback):
    """Checks the training loss each time the module logs it (every log_every_n_steps, so no per-step sync).

    Diverged = the loss is NaN/inf once, or above `max_loss_ratio` x the first logged loss for `patience`
    consecutive checks. The run stops; `reason` says why, and the job records status "diverged".
    """

    def __init__(self, max_loss_ratio: float = 10.0, patience: int = 3) -> None:
        self.max_loss_ratio, self.patience = float(max_loss_ratio), int(patience)
        self.initial_loss: float | None = None
        self.strikes = 0
        self.reason: str | None = None
        self._last_seen: Any = None

    @property
    def diverged(self) -> bool:
        return self.reason is not None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx
    ):
        loss = getattr(pl_module, "last_train_loss", None)
        if loss is None or loss is self._last_seen:
            return
        self._last_seen = loss
        value = float(loss)  # one host sync per logging window
        step = trainer.global_step
        if not math.isfinite(value):
            self._stop(trainer, f"training loss became {value} at step {step}")
            return
        if self.initial_loss is None:
            self.initial_loss = value
            return
        if value > self.max_loss_ratio * self.initial_loss:
            self.strikes += 1
            if self.strikes >= self.patience:
                self._stop(
                    trainer,
                    f"training loss {value:.4g} stayed above {self.max_loss_ratio:g} x the initial "
                    f"{self.initial_loss:.4g} for {self.strikes} checks (step {step})",
                )
        else:
            self.strikes = 0

    def _stop(self, trainer: pl.Trainer, reason: str) -> None:
        self.reason = reason
        trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"initial_loss": self.initial_loss, "strikes": self.strikes, "reason": self.reason}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.initial_loss = state_dict.get("initial_loss")
        self.strikes = int(state_dict.get("strikes", 0))
        self.reason = state_dict.get("reason")
