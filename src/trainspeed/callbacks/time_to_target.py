"""Time-to-target: when did the validation metric first reach the target, in seconds, steps, epochs, samples?"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from trainspeed.callbacks.stepped_loop import (
    NEVER,
    find_stepped_loop,
    largest_validation_gap,
    never_validates,
)
from trainspeed.callbacks.train_clock import TrainClock
from trainspeed.options import metric_mode

log = logging.getLogger(__name__)


class TimeToTarget(Callback):
    """Checks the metric after every validation during fit; records the first time it reaches the target.

    The record is logged to every logger (time_to_target/*) and kept in `self.result` for summary.json.
    With `stop`, the run ends as soon as the target is reached.
    """

    def __init__(
        self,
        clock: TrainClock,
        metric: str,
        target: float,
        stop: bool = False,
        mode: str = "auto",
        timed: bool | None = None,
    ):
        self.clock, self.metric, self.target, self.stop = clock, metric, float(target), bool(stop)
        # whether the run is there to be timed (a sweep job, or one that stops at its target): a validation
        # cadence it never reaches is refused then, else a warning (a short run for its diagnostics, say)
        self.timed = self.stop if timed is None else bool(timed)
        self.mode = metric_mode(metric, mode)
        self.result: dict[str, Any] | None = None
        self.best: float | None = None
        self.resolution_steps: int | None = None

    def _better(self, value: float, than: float) -> bool:
        return value > than if self.mode == "max" else value < than

    def _reached(self, value: float) -> bool:
        return value >= self.target if self.mode == "max" else value <= self.target

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stepped = find_stepped_loop(trainer)
        # optimizer steps per epoch: Lightning's val_check_batch counts iterations, which may hold several steps
        length = stepped.epoch_length(trainer) if stepped is not None else trainer.num_training_batches
        if isinstance(length, int | float) and math.isfinite(length) and length > 0:
            self._check_validates(trainer, int(length))
            self.resolution_steps = largest_validation_gap(trainer, int(length))

    def _check_validates(self, trainer: pl.Trainer, steps_per_epoch: int) -> None:
        refusal = never_validates(trainer, steps_per_epoch)
        if refusal is None:
            return
        if self.timed:
            raise refusal
        log.warning(
            "this run will not validate, so it will have no time to target: %s (to validate: %s %s)",
            (refusal.problem or "").removesuffix(NEVER),
            refusal.key,
            refusal.accepted,
        )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (
            trainer.sanity_checking
            or trainer.state.fn != "fit"
            or self.metric not in trainer.callback_metrics
        ):
            return
        value = float(trainer.callback_metrics[self.metric])
        if math.isnan(value):
            return
        if self.best is None or self._better(value, self.best):
            self.best = value
        if self.result is not None or not self._reached(value):
            return
        self.result = {
            "metric": self.metric,
            "target": self.target,
            "seconds": round(self.clock.seconds, 4),
            "steps": int(trainer.global_step),
            "epochs": round(self.clock.epochs(trainer), 4),
            "samples": int(self.clock.samples),
            "resolution_steps": self.resolution_steps,
        }
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(
                    {
                        f"time_to_target/{k}": v
                        for k, v in self.result.items()
                        if k in ("seconds", "steps", "epochs", "samples")
                    },
                    # the logger step of this validation's own row (Lightning's: the index of the step just taken)
                    step=trainer.fit_loop.epoch_loop._batches_that_stepped,
                )
        if self.stop:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"result": self.result, "best": self.best, "resolution_steps": self.resolution_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.result, self.best = state_dict.get("result"), state_dict.get("best")
        self.resolution_steps = state_dict.get("resolution_steps", self.resolution_steps)
