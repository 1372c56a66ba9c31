"""Per-layer diagnostics every N optimizer steps: what the signal and the updates look like inside the network.

For each Linear / Conv layer (layer_stats.py): the mean and std of its output, the fraction of dead units (ReLU
family) or saturated outputs (sigmoid / tanh) after its activation, the norm of its weight's gradient and the
update-to-weight ratio of the step. Written to diagnostics.csv in the run folder and to every logger as
`diag_<statistic>/<position>_<layer>` (W&B and TensorBoard make a chart section of the part before the first
slash: one section per statistic, its charts in layer order).

Cost: with the callback absent nothing is registered anywhere. With it, the only hook that lives all run is an
optimizer step post-hook that counts steps (one Python call per step); the forward hooks and the optimizer
pre-hook are registered just before a diagnostic step (at the start of its Lightning iteration, or by the step
before it) and removed by the diagnostic step itself.

Why torch hooks rather than Lightning's batch hooks: the optimizer's own step hooks fire once per optimizer step
whatever runs the loop (Lightning's automatic optimization, which runs forward and backward inside
`optimizer.step(closure)`, a manual loop, or several steps per Lightning batch), so the diagnostic step is found
by counting optimizer steps, not batches. The weights are copied in the pre-hook (before the update; a closure
never changes them) and gradients are read in the post-hook (after backward in every loop design).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch.utils.hooks import RemovableHandle

from trainspeed.callbacks.layer_stats import WatchedLayer, activation_fraction, output_stats, watched_layers
from trainspeed.record.diagnostics_csv import (
    FILENAME,
    STATS,
    LayerRow,
    RowWriter,
    last_step,
    set_aside,
)

log = logging.getLogger(__name__)


class LayerDiagnostics(Callback):
    """Records per-layer statistics on every optimizer step whose number is a multiple of `every_n_steps`
    (step 0, the network as initialized, included). Only the global-zero process records (its own batch)."""

    def __init__(self, dirpath: str | Path, every_n_steps: int = 10, filename: str = FILENAME) -> None:
        if int(every_n_steps) < 1:
            raise ValueError(f"every_n_steps={every_n_steps}; accepted: an integer >= 1")
        self.path = Path(dirpath) / filename
        self.every_n_steps = int(every_n_steps)
        self.layers: list[WatchedLayer] = []
        self._optimizer: torch.optim.Optimizer | None = None
        self._loggers: list = []
        self._step = 0  # optimizer steps done so far = the number of the next step
        self._written_up_to: int | None = None  # the last step already in the file (a resumed run)
        self._counter: RemovableHandle | None = None
        self._armed: list[RemovableHandle] = []
        self._captured: dict[tuple[int, str], torch.Tensor] = {}
        self._before: dict[int, torch.Tensor] | None = None  # weights before the step, once its pre-hook ran
        self._compiled = False
        self._writer: RowWriter | None = None

    # --- Lightning: set up and tear down -------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not trainer.optimizers:
            return
        self.layers = watched_layers(pl_module)
        # a compiled graph runs without the module hooks registered after it was traced (torch.compile guards
        # none): its activation statistics cannot be seen without recompiling, so only the optimizer's are kept
        self._compiled = any(type(m).__name__ == "OptimizedModule" for m in pl_module.modules())
        if self._compiled:
            log.warning(
                "diagnostics with trainer.compile=true: activation statistics are not recorded (a compiled "
                "graph skips module hooks); gradient norms and update ratios are"
            )
        self._optimizer = trainer.optimizers[0]
        self._loggers = list(trainer.loggers)
        self._written_up_to = last_step(self.path)
        if self._written_up_to is not None and trainer.global_step == 0:
            self._written_up_to = None  # a new start, not a resume: the earlier attempt's rows are kept aside
            kept = set_aside(self.path)
            log.warning("%s holds an earlier attempt's rows: moved to %s", self.path, kept)
        self._counter = self._optimizer.register_step_post_hook(self._after_step)
        self._writer = RowWriter(self.path)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx
    ) -> None:
        # arms the first diagnostic step of the iteration (a warm-up forward before the first batch stays out);
        # later steps of an iteration that runs several are armed by the step before them (_after_step).
        # Lightning's count wins over ours: a step the AMP scaler skipped never called the optimizer.
        if self._counter is not None:
            self._sync(trainer.global_step)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._teardown()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._teardown()

    def _teardown(self) -> None:
        self._disarm()
        if self._counter is not None:
            self._counter.remove()
            self._counter = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # --- arming: hooks only around a diagnostic step ------------------------------------------------------
    def _due(self, step: int) -> bool:
        return step % self.every_n_steps == 0

    def _sync(self, step: int) -> None:
        self._step = step
        if self._due(step) and not self._armed:
            self._arm()
        elif not self._due(step) and self._armed:
            self._disarm()

    def _arm(self) -> None:
        self._captured, self._before = {}, None
        for layer in [] if self._compiled else self.layers:
            self._armed.append(layer.module.register_forward_hook(partial(self._record_output, layer)))
            if layer.activation is not None:
                hook = partial(self._record_activation, layer)
                self._armed.append(layer.activation.register_forward_hook(hook))
        self._armed.append(self._optimizer.register_step_pre_hook(self._before_step))

    def _disarm(self) -> None:
        for handle in self._armed:
            handle.remove()
        self._armed = []

    # --- the hooks -------------------------------------------------------------------------------------------
    def _record_output(self, layer: WatchedLayer, module, args, output) -> None:
        # the first training forward of the step only: not validation (no grad), not a second micro-batch
        if torch.is_grad_enabled() and isinstance(output, torch.Tensor):
            if (layer.position, "act_mean") not in self._captured:
                with torch.no_grad():
                    mean, std = output_stats(output)
                self._captured[(layer.position, "act_mean")] = mean
                self._captured[(layer.position, "act_std")] = std

    def _record_activation(self, layer: WatchedLayer, module, args, output) -> None:
        key = (layer.position, layer.activation_stat)
        if torch.is_grad_enabled() and isinstance(output, torch.Tensor) and key not in self._captured:
            with torch.no_grad():
                self._captured[key] = activation_fraction(output, layer)

    def _before_step(self, optimizer, args, kwargs) -> None:
        with torch.no_grad():
            self._before = {
                layer.position: layer.module.weight.detach().clone()
                for layer in self.layers
                if layer.module.weight.requires_grad
            }

    def _after_step(self, optimizer, args, kwargs) -> None:
        if self._armed and self._before is not None:
            self._finish(self._step)
            self._disarm()
        self._sync(self._step + 1)

    # --- one diagnostic step's rows ------------------------------------------------------------------------
    def _finish(self, step: int) -> None:
        cells = self._captured  # (position, statistic) -> 0-dim tensor on the device
        with torch.no_grad():
            for layer in self.layers:
                weight = layer.module.weight
                if weight.grad is not None:
                    cells[(layer.position, "grad_norm")] = weight.grad.detach().float().norm()
                before = (self._before or {}).get(layer.position)
                if before is not None:
                    update = (weight.detach() - before).float().norm()
                    cells[(layer.position, "update_ratio")] = update / before.float().norm()
            keys = list(cells)
            # one host sync for the whole step
            values = torch.stack([cells[k].float() for k in keys]).tolist() if keys else []
        found = {k: v for k, v in zip(keys, values, strict=True) if v == v}  # NaN (0/0): no value
        rows = [
            LayerRow(step, layer.position, layer.name, **{s: found.get((layer.position, s)) for s in STATS})
            for layer in self.layers
        ]
        self._captured, self._before = {}, None
        if self._written_up_to is None or step > self._written_up_to:
            self._writer.append(rows)
        self._log(rows, step)

    def _log(self, rows: list[LayerRow], step: int) -> None:
        metrics: dict[str, Any] = {
            f"diag_{stat}/{row.position:02d}_{row.layer.replace('.', '_')}": row.stat(stat)
            for row in rows
            for stat in STATS
            if row.stat(stat) is not None
        }
        for logger in self._loggers:
            logger.log_metrics(metrics, step=step)
