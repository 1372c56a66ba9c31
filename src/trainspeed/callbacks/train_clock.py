"""The training-time clock: wall-clock seconds of training steps only.

Evaluation, checkpointing and start-up are excluded (the AlgoPerf convention), so techniques are compared on what
they change. The clock is driven by the training step itself (trainspeed.training.classifier): it runs while a
group of optimizer steps executes (fetching each batch, forward, backward, clipping, the optimizer and scheduler
steps) and stops when the group ends. So Lightning's per-iteration bookkeeping, callback hooks, the progress bar,
logging, validation and checkpoint writes are all outside it, whichever of them a run enables: two runs that
differ only in loggers or callbacks record the same training seconds. (Lightning's Timer callback measures whole
stages, validation and checkpointing included, so it cannot give this number.)

On a GPU each timed span is a pair of CUDA events on the current stream, read when the clock is next asked for its
seconds: a span then covers the device's work from its first to its last kernel, and the device is never
synchronized per step. On a CPU the spans are read with time.perf_counter.

Before the first span, the module's `warm_up` runs one forward and backward per training batch shape: one-time
costs (first-kernel selection, allocator growth, torch.compile) would otherwise land in the first job of a process
and not in later ones. With `compile`, that time is the compilation, kept as `compile_seconds` and charged to
training only with `charge_compile`.
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
    """Counts training seconds and samples seen; its state is checkpointed so a resumed run keeps counting.

    `start()` and `stop()` bracket each timed span; `seconds` is the total so far. A module with
    `drives_train_clock = True` calls them around its steps; for any other module each training batch is a span,
    from `on_train_batch_start` to `on_train_batch_end`."""

    def __init__(self, compiled: bool = False, charge_compile: bool = False) -> None:
        self.compiled, self.charge_compile = compiled, charge_compile
        self._seconds = 0.0
        self.samples = 0
        self.compile_seconds = 0.0
        self.recompilations = 0  # graphs torch.compile built while the clock ran (charged to training)
        self._started_at: float | None = None
        self._cuda_spans: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []  # recorded, not yet read
        self._cuda_start: torch.cuda.Event | None = None
        self._graphs_at_start = 0
        self._epoch_steps = 0  # optimizer steps done in the current epoch
        self.cuda = False  # the training device is a GPU: spans are CUDA events
        self._module_driven = False  # the module starts and stops the clock around its steps

    @property
    def running(self) -> bool:
        return self._started_at is not None

    @property
    def seconds(self) -> float:
        """Training seconds so far (on a GPU this waits for the recorded spans to finish)."""
        if self._cuda_spans:
            self._cuda_spans[-1][1].synchronize()
            self._seconds += sum(begin.elapsed_time(end) for begin, end in self._cuda_spans) / 1e3
            self._cuda_spans.clear()
        return self._seconds

    def start(self) -> None:
        """Start a timed span (no-op while one runs)."""
        if self._started_at is not None:
            return
        if self.compiled:
            self._graphs_at_start = _compiled_graphs()
        if self.cuda:
            self._cuda_start = torch.cuda.Event(enable_timing=True)
            self._cuda_start.record()
        self._started_at = time.perf_counter()

    def stop(self) -> None:
        """End the current span (no-op when none runs)."""
        if self._started_at is None:
            return
        if self._cuda_start is not None:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._cuda_spans.append((self._cuda_start, end))
            self._cuda_start = None
        else:
            self._seconds += time.perf_counter() - self._started_at
        self._started_at = None
        if self.compiled:
            self.recompilations += _compiled_graphs() - self._graphs_at_start

    def pause(self, trainer: pl.Trainer | None = None) -> None:
        """End any running span (a step interrupted by an exception) and read the recorded ones."""
        self.stop()
        _ = self.seconds

    def epochs(self, trainer: pl.Trainer) -> float:
        """Epochs completed, fractional: the current epoch plus the share of its optimizer steps done."""
        stepped = find_stepped_loop(trainer)
        steps = stepped.epoch_length(trainer) if stepped is not None else trainer.num_training_batches
        if not steps or steps == float("inf"):
            return float(trainer.current_epoch)
        return trainer.current_epoch + self._epoch_steps / steps

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.cuda = trainer.strategy.root_device.type == "cuda"
        self._module_driven = bool(getattr(pl_module, "drives_train_clock", False))
        warm_up, loader = getattr(pl_module, "warm_up", None), trainer.train_dataloader
        if warm_up is None or not hasattr(loader, "shapes"):
            return
        started = time.perf_counter()
        warm_up(loader.shapes())
        if self.cuda:
            torch.cuda.synchronize(trainer.strategy.root_device)
        if self.compiled:
            elapsed = time.perf_counter() - started
            self.compile_seconds += elapsed
            if self.charge_compile:
                self._seconds += elapsed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if not self._module_driven:
            self.start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not self._module_driven:
            self.stop()
        if isinstance(batch, StepGroup):
            self.samples += batch.samples
            self._epoch_steps = batch.end
        else:
            self.samples += int(batch[1].shape[0])  # shape is host metadata: no device sync
            self._epoch_steps = batch_idx + 1

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            pl_module.log_dict({"time/train_seconds": self.seconds, "time/samples": float(self.samples)})

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
        self._seconds = float(state_dict["seconds"])
        self._cuda_spans.clear()
        self.samples = int(state_dict["samples"])
        self.compile_seconds = float(state_dict.get("compile_seconds", 0.0))


def _compiled_graphs() -> int:
    """Graphs torch.compile has built in this process so far."""
    from torch._dynamo.utils import counters  # imported only when compiling

    return int(counters["stats"]["unique_graphs"])


def find_clock(trainer: pl.Trainer) -> TrainClock | None:
    """The trainer's TrainClock callback, if it has one."""
    return next((c for c in trainer.callbacks if isinstance(c, TrainClock)), None)
