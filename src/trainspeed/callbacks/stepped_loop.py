"""Several optimizer steps per Lightning iteration, with every cadence still counted in optimizer steps.

A Lightning loop iteration costs a fixed ~0.5 ms of hooks, progress bookkeeping and logging decisions on a CPU, as
much as a whole step of a small network (Keras's `steps_per_execution` answers the same cost). So the training
loader hands Lightning a *group* of up to `trainer.steps_per_iteration` optimizer steps at a time and the module
runs them in one `training_step`. Groups are cut so that every event still lands on its exact optimizer step:
a group ends at each multiple of `log_every_n_steps`, of every checkpoint's `every_n_train_steps`, of the
validation cadence, at `max_steps` and at the epoch's end. This callback keeps Lightning's counters in optimizer
steps: the logger step advances with the group and the validation check counts steps. The loader has no length
(the number of groups differs by epoch), so Lightning finds an epoch's last group by looking one ahead.
"""

from __future__ import annotations

import logging
import math
from functools import partial
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loops.loop import _Loop

from trainspeed.errors import ConfigError
from trainspeed.step_groups import StepGroup, StepPlan

log = logging.getLogger(__name__)


def _validation_every(trainer: pl.Trainer, steps_per_epoch: int) -> tuple[int | None, bool]:
    """(optimizer steps between validations, whether counted globally); None: only at the epoch's end."""
    interval = trainer.val_check_interval
    global_count = trainer.check_val_every_n_epoch is None
    if isinstance(interval, int):
        return interval, global_count
    if isinstance(interval, float) and interval < 1.0:
        return max(1, int(steps_per_epoch * interval)), False
    return None, False


def largest_validation_gap(trainer: pl.Trainer, steps_per_epoch: int) -> int | None:
    """The most optimizer steps between two validations (None: validation by time has no step cadence). A cadence
    counted within each epoch restarts at the epoch's start (Lightning validates at its multiples only), so the
    gap across an epoch's end is longer: every 7 steps of a 20-step epoch validates at 7, 14, 27, 34, ...,
    13 steps apart."""
    if trainer._val_check_time_interval is not None:
        return None
    every, global_count = _validation_every(trainer, steps_per_epoch)
    epochs = int(trainer.check_val_every_n_epoch or 1)
    if every is None:
        return steps_per_epoch * epochs
    if global_count:
        return every
    return every + steps_per_epoch % every + (epochs - 1) * steps_per_epoch


def _run_steps(trainer: pl.Trainer, steps_per_epoch: int) -> tuple[int, str] | None:
    """The optimizer steps the whole run trains and the setting that bounds them; None: unbounded."""
    bounds = []
    if trainer.max_steps is not None and trainer.max_steps > 0:
        bounds.append((trainer.max_steps, f"trainer.max_steps={trainer.max_steps}"))
    if trainer.max_epochs is not None and trainer.max_epochs > 0:
        bounds.append((trainer.max_epochs * steps_per_epoch, f"trainer.max_epochs={trainer.max_epochs}"))
    return min(bounds) if bounds else None


NEVER = ": it would never validate, so never time its target"


def never_validates(trainer: pl.Trainer, steps_per_epoch: int) -> ConfigError | None:
    """Why the validation cadence never comes within the run (the setting to blame, what would validate), or None:
    such a run ends with no validation, so no time to target and no metric. Lightning refuses a per-epoch interval
    longer than the epoch only for a loader with a length, which a loader of step groups has not; a cadence
    beyond a run bounded by steps or epochs it allows."""
    if trainer._val_check_time_interval is not None or trainer.fast_dev_run or trainer.limit_val_batches == 0:
        return None
    every, global_count = _validation_every(trainer, steps_per_epoch)
    if every is not None and not global_count and every > steps_per_epoch:
        return ConfigError(
            "trainer.val_check_interval",
            every,
            f"at most {steps_per_epoch}, or trainer.check_val_every_n_epoch=null to count the steps across epochs",
            problem=f"it counts optimizer steps within each epoch, of which there are {steps_per_epoch}{NEVER}",
        )
    run = _run_steps(trainer, steps_per_epoch)
    epochs = int(trainer.check_val_every_n_epoch or 1)
    first = every if global_count else (epochs - 1) * steps_per_epoch + (every or steps_per_epoch)
    if run is None or first is None or first <= run[0]:
        return None
    steps, bound = run
    if every is None:  # at the end of an epoch: the run is what is too short
        key, value = bound.split("=")
        least = f"{first} (optimizer steps)" if key == "trainer.max_steps" else f"{epochs} (epochs)"
        cadence = "every epoch" if epochs == 1 else f"every {epochs} epochs"
        return ConfigError(
            key,
            int(value),
            f"at least {least}, or trainer.val_check_interval at most {steps} (optimizer steps between "
            "validations)",
            problem=f"the run validates at the end of {cadence}, first after step {first}, and ends at step "
            f"{steps}{NEVER}",
        )
    key, value = (
        ("trainer.val_check_interval", every)
        if global_count or epochs == 1
        else (
            "trainer.check_val_every_n_epoch",
            epochs,
        )
    )
    return ConfigError(
        key,
        value,
        f"small enough to validate within the run's {steps} optimizer steps, or a longer run",
        problem=f"the first validation would come after step {first}, and the run ends at step {steps} "
        f"({bound}){NEVER}",
    )


class SteppedLoop(Callback):
    """Runs up to `steps_per_iteration` optimizer steps per Lightning iteration (see the module docstring).

    Falls back to one step per iteration where Lightning's own batch counting would disagree with steps:
    several devices (DDP synchronizes per forward call), `limit_train_batches`, `overfit_batches`,
    `fast_dev_run`, and validation at a fraction of an epoch or by time."""

    def __init__(self, steps_per_iteration: int = 1, accumulate: int = 1) -> None:
        self.requested = max(int(steps_per_iteration), 1)
        self.accumulate = max(int(accumulate), 1)  # batches per optimizer step
        self.plan = StepPlan()
        self.steps_per_epoch: int | None = None

    def _size(self, trainer: pl.Trainer) -> int:
        limits = {
            "devices": trainer.world_size > 1,
            "limit_train_batches": trainer.limit_train_batches not in (None, 1.0),
            "overfit_batches": trainer.overfit_batches > 0,
            "fast_dev_run": bool(trainer.fast_dev_run),
            "val_check_interval": trainer._val_check_time_interval is not None
            or (isinstance(trainer.val_check_interval, float) and trainer.val_check_interval < 1.0),
        }
        reasons = [name for name, on in limits.items() if on]
        if reasons and self.requested > 1:
            log.info(
                "one optimizer step per iteration (steps_per_iteration ignored with %s)", ", ".join(reasons)
            )
            return 1
        return self.requested

    def make_plan(self, trainer: pl.Trainer, steps_per_epoch: int) -> StepPlan:
        """The grouping for this trainer, given the loader's optimizer steps per epoch."""
        self.steps_per_epoch = steps_per_epoch
        size = self._size(trainer)
        every = {trainer.log_every_n_steps} if trainer.log_every_n_steps else set()
        every |= {
            c._every_n_train_steps
            for c in trainer.callbacks
            if isinstance(c, ModelCheckpoint) and c._every_n_train_steps
        }
        val_every, global_count = _validation_every(trainer, steps_per_epoch)
        epoch_every: set[int] = set()
        if val_every:
            (every if global_count else epoch_every).add(val_every)
        stop_at = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        self.plan = StepPlan(size, tuple(sorted(every)), tuple(sorted(epoch_every)), stop_at)
        return self.plan

    def epoch_length(self, trainer: pl.Trainer) -> int | float:
        """Optimizer steps per epoch (Lightning's count, limits included, when each iteration is one step)."""
        if self.plan.size > 1 and self.steps_per_epoch:
            return self.steps_per_epoch
        return trainer.num_training_batches

    def steps_in_epoch(self, trainer: pl.Trainer) -> int:
        return trainer.global_step - trainer.current_epoch * (self.steps_per_epoch or 0)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            loop = trainer.fit_loop.epoch_loop
            loop._should_check_val_fx = partial(self._should_validate, trainer, loop._should_check_val_fx)

    def _should_validate(self, trainer: pl.Trainer, lightning_check, data_fetcher) -> bool:
        """Lightning's check, with its batch-index cadence replaced by the same cadence in optimizer steps."""
        loop = trainer.fit_loop.epoch_loop
        every, global_count = _validation_every(trainer, self.steps_per_epoch or 1)
        if self.plan.size == 1:
            return lightning_check(data_fetcher)
        if not loop._should_check_val_epoch():
            return False
        if trainer.should_stop and trainer.fit_loop._can_stop_early:
            return True
        if every is None:
            return loop.batch_progress.is_last_batch
        count = trainer.global_step if global_count else self.steps_in_epoch(trainer)
        return count % every == 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        fit = trainer.fit_loop
        epochs = fit.epoch_progress.current
        if (
            fit.restarting
            and fit.epoch_loop.batch_progress.is_last_batch
            and epochs.ready == epochs.started == epochs.processed
        ):
            # Resumed from a checkpoint written once an epoch's training was over (at its end hooks, or when the
            # run ended there): a run bounded by epochs is not restarting then (the epoch is done) and starts the
            # next epoch cleanly. One bounded by steps (max_steps) stays restarting, and Lightning resumes it as if
            # inside the finished epoch: it runs that epoch's end hooks again (plateau schedulers step twice) and
            # seeds the next epoch's order with the epoch after it. Lightning's own reset, not restarting, takes
            # the clean path here too (FitLoop's setter keeps a run bounded by steps restarting: set as a plain
            # loop's).
            _Loop.restarting.fset(fit, False)
            fit.reset()
        # Resumed from a checkpoint written after an epoch's last group: Lightning counts that epoch as done and
        # starts the next one, but clears the finished epoch's batch progress only when it reaches the loader's
        # length, which a loader of groups has not; with a finite count for this one check, it does.
        loop = trainer.fit_loop.epoch_loop
        if self.plan.size > 1 and loop.restarting and loop.batch_progress.is_last_batch:
            trainer.fit_loop.max_batches = loop.batch_progress.current.completed + 1

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch: Any, batch_idx: int) -> None:
        # the count set on start has served; a loader of groups has no length again. A plan of one step per
        # iteration keeps Lightning's finite count (progress bar, fractional epochs and validation need it)
        if self.plan.size > 1 and trainer.fit_loop.max_batches != math.inf:
            trainer.fit_loop.max_batches = math.inf
        # Lightning adds one logger step per iteration; the rest of the group's steps are added here, before any
        # callback asks whether this iteration logs (LearningRateMonitor does so in on_train_batch_start)
        if isinstance(batch, StepGroup) and len(batch) > 1:
            trainer.fit_loop.epoch_loop._batches_that_stepped += len(batch) - 1


def find_stepped_loop(trainer: pl.Trainer | None) -> SteppedLoop | None:
    if trainer is None:
        return None
    return next((c for c in trainer.callbacks if isinstance(c, SteppedLoop)), None)
