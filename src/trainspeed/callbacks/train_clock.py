"""The training-time clock: wall-clock seconds of training steps only.

Evaluation, checkpointing and start-up are excluded (the AlgoPerf convention), so techniques are compared on what
they change. The clock runs from the start of a training batch until the next pause point (validation, epoch end,
checkpoint write, end of training); between consecutive batches it keeps running, so data fetching and optimizer
work count. On a GPU the device is synchronized only at pause points, never per step. (Lightning's Timer callback
measures whole stages, validation and checkpointing included, so it cannot give this number.)

Before the clock first starts, the module's `warm_up` runs one forward and backward per training batch shape:
one-time costs (first-kernel selection, allocator growth, torch.compile) would otherwise land in the first job
of a process and not in later ones. With `compile`, that time is the compilation, kept as `compile_seconds` and
charged to training only with `charge_compile`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from trainspeed.callbacks.stepped_loop import find_stepped_loop
from trainspeed.step_groups import StepGroup

log = logging.getLogger(__name__)


class TrainClock(Callback):
    """Counts training seconds and samples seen; its state is checkpointed so a resumed run keeps counting."""

    def __init__(self, compiled: bool = False, charge_compile: bool = False) -> None:
        self.compiled, self.charge_compile = compiled, charge_compile
        self.seconds = 0.0
        self.samples = 0
        self.compile_seconds = 0.0
        self.recompilations = 0  # graphs torch.compile built while the clock ran (charged to training)
        self._started_at: float | None = None
        self._graphs_at_start = 0
        self._epoch_steps = 0  # optimizer steps done in the current epoch

    @property
    def running(self) -> bool:
        return self._started_at is not None

    def pause(self, trainer: pl.Trainer | None = None) -> None:
        """Stop counting (waiting for queued device work first, so it is charged to training)."""
        if self._started_at is None:
            return
        if trainer is not None and trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)
        self.seconds += time.perf_counter() - self._started_at
        self._started_at = None
        if self.compiled:
            self.recompilations += _compiled_graphs() - self._graphs_at_start

    def epochs(self, trainer: pl.Trainer) -> float:
        """Epochs completed, fractional: the current epoch plus the share of its optimizer steps done."""
        stepped = find_stepped_loop(trainer)
        steps = stepped.epoch_length(trainer) if stepped is not None else trainer.num_training_batches
        if not steps or steps == float("inf"):
            return float(trainer.current_epoch)
        return trainer.current_epoch + self._epoch_steps / steps

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        warm_up, loader = getattr(pl_module, "warm_up", None), trainer.train_dataloader
        if warm_up is None or not hasattr(loader, "shapes"):
            return
        started = time.perf_counter()
        warm_up(loader.shapes())
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)
        if self.compiled:
            elapsed = time.perf_counter() - started
            self.compile_seconds += elapsed
            if self.charge_compile:
                self.seconds += elapsed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self._started_at is None:
            if self.compiled:
                self._graphs_at_start = _compiled_graphs()
            self._started_at = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if isinstance(batch, StepGroup):
            self.samples += batch.samples
            self._epoch_steps = batch.end
        else:
            self.samples += int(batch[1].shape[0])  # shape is host metadata: no device sync
            self._epoch_steps = batch_idx + 1

    def on_validation_start(self, trainer, pl_module) -> None:
        self.pause(trainer)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            pl_module.log_dict({"time/train_seconds": self.seconds, "time/samples": float(self.samples)})

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.pause(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self.pause(trainer)
        if self.recompilations:
            log.warning(
                "torch.compile compiled %d graph(s) during training (a new input shape or a changed module); "
                "their compilation time is in train_seconds",
                self.recompilations,
            )

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.pause(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "samples": self.samples, "compile_seconds": self.compile_seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # restored before training starts; a resumed run then compiles again and both compilations count
        self.seconds = float(state_dict["seconds"])
        self.samples = int(state_dict["samples"])
        self.compile_seconds = float(state_dict.get("compile_seconds", 0.0))


def _compiled_graphs() -> int:
    """Graphs torch.compile has built in this process so far."""
    from torch._dynamo.utils import counters  # imported only when compiling

    return int(counters["stats"]["unique_graphs"])


def find_clock(trainer: pl.Trainer) -> TrainClock | None:
    """The trainer's TrainClock callback, if it has one."""
    return next((c for c in trainer.callbacks if isinstance(c, TrainClock)), None)
