"""Ctrl-C during training takes effect between Lightning iterations, where every counter agrees.

Python raises KeyboardInterrupt wherever the interpreter happens to be: between an optimizer step and the step
counter, half-way through a group of steps (trainspeed.callbacks.stepped_loop), or between the training clock's
sample count and Lightning's batch progress. The checkpoint written on the interrupt would then hold parameters,
counters and data position that disagree, and the resumed run would not continue exactly. Lightning leaves
SIGINT to Python, so this callback defers it while training runs: the first Ctrl-C is raised at the start of
the next iteration (or at the end of training), after the current one and its validation have finished; a second
Ctrl-C stops at once, as before.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


class StepBoundaryInterrupt(Callback):
    """Defers the first Ctrl-C during fit to the next iteration boundary (module docstring)."""

    def __init__(self) -> None:
        self.pending = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.pending:  # the second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.pending = True
        from trainspeed.sweep_console import visible_stderr

        print(
            "trainspeed: stopping after this training step (press Ctrl-C again to stop at once)",
            file=visible_stderr(),
            flush=True,
        )

    def _raise_pending(self) -> None:
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # signal handlers belong to the main thread; a job run in a worker thread keeps Python's behaviour
        handler = signal.getsignal(signal.SIGINT)
        if threading.current_thread() is threading.main_thread() and handler is signal.default_int_handler:
            self._previous = handler
            signal.signal(signal.SIGINT, self._handle)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch: Any, batch_idx: int) -> None:
        self._raise_pending()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()
        self._raise_pending()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._restore()
        self.pending = False
