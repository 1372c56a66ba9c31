"""The LightningModule: cross-entropy classification with a lean training step."""

from __future__ import annotations

import contextlib
import copy
import math
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import DictConfig
from pytorch_lightning.strategies import SingleDeviceStrategy
from pytorch_lightning.utilities.model_helpers import is_overridden
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from trainspeed.callbacks.stepped_loop import find_stepped_loop
from trainspeed.callbacks.train_clock import TrainClock, find_clock
from trainspeed.optim.optimizers import build_optimizer
from trainspeed.optim.schedulers import build_scheduler
from trainspeed.record.checkpoint_file import RUNNING_STATE_KEY
from trainspeed.step_groups import StepGroup

if TYPE_CHECKING:
    from trainspeed.training.finetune import FinetunePlan

# Lightning hooks called around each optimizer step; a callback that overrides one gets the wrapped step
STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad")


def optimizer_step_budget(trainer: pl.Trainer) -> int:
    """The run's optimizer steps, which step-wise schedules (cosine, onecycle) span: Lightning's estimate counts
    loader items, and the loader of step groups has no length."""
    estimate = trainer.estimated_stepping_batches  # loads the training data, which makes the step plan
    stepped = find_stepped_loop(trainer)
    if stepped is None or stepped.plan.size == 1:
        return int(estimate)  # one optimizer step per loader item
    per_epoch = stepped.steps_per_epoch or 1
    by_epochs = per_epoch * trainer.max_epochs if trainer.max_epochs not in (None, -1) else math.inf
    by_steps = trainer.max_steps if trainer.max_steps not in (None, -1) else math.inf
    budget = min(by_epochs, by_steps)
    return int(budget) if math.isfinite(budget) else per_epoch


def _step_unobserved(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None) -> None:
    """One optimizer step (through the gradient scaler when there is one) that its step hooks do not see (a warm-up
    step is not a training step: the diagnostics and anyone counting steps by hook must not count it)."""
    hooks = optimizer._optimizer_step_pre_hooks, optimizer._optimizer_step_post_hooks
    optimizer._optimizer_step_pre_hooks, optimizer._optimizer_step_post_hooks = OrderedDict(), OrderedDict()
    try:
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
    finally:
        optimizer._optimizer_step_pre_hooks, optimizer._optimizer_step_post_hooks = hooks


class _NoClock:
    """Stands in for the training clock in a trainer without one (the learning-rate range test)."""

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None


class Classifier(pl.LightningModule):
    """Trains `network` on (x, y) batches; logs train/loss, train/acc, lr, val/loss, val/acc, val/acc_best, test/acc.

    Training time is what the product measures, so the training step keeps the framework's cost small:
    - Manual optimization over groups of optimizer steps (trainspeed.callbacks.stepped_loop): one Lightning
      iteration runs several steps. Each step zero-grads, runs forward and backward over its `accumulate` batches,
      clips, steps the optimizer and the per-step schedulers, and counts itself in `global_step`.
    - On one device without a gradient scaler, and when no callback listens to the per-step hooks (on_before_backward,
      on_after_backward, on_before_optimizer_step, on_before_zero_grad), the step calls the optimizer and backward
      directly; otherwise it goes through Lightning's optimizer wrapper and `manual_backward` (DDP's gradient
      averaging, AMP's loss scaling and those hooks live there). Gradients are clipped before the optimizer step;
      with a gradient scaler (16-mixed), in `on_before_optimizer_step`, just after the scaler has unscaled them.
    - Each batch's loss and logits are kept on the device and the window's mean loss and accuracy are computed
      and logged every `log_every_n_steps` optimizer steps (a `self.log` per step would cost about as much as a
      whole small step; `.item()` would force a device sync).
    - The training clock (trainspeed.callbacks.train_clock) runs only while the steps run, fetching their batches
      included and logging excluded.
    """

    drives_train_clock = True

    def __init__(
        self,
        network: nn.Module,
        optimizer_cfg: DictConfig,
        scheduler_cfg: DictConfig,
        num_classes: int,
        log_every_n_steps: int = 10,
        finetune: FinetunePlan | None = None,
        accumulate_grad_batches: int = 1,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.network = network
        self.finetune = finetune  # head / backbone parameter groups and freezing for pretrained weights
        self.optimizer_cfg, self.scheduler_cfg = optimizer_cfg, scheduler_cfg
        self.log_every_n_steps = max(int(log_every_n_steps), 1)
        self.accumulate = max(int(accumulate_grad_batches), 1)
        self.clip_val = gradient_clip_val or None
        self.clip_algorithm = gradient_clip_algorithm or "norm"
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_acc_best = MaxMetric()
        # the fingerprints of the data and weights the run reads (record/inputs.py), kept in every checkpoint so
        # that a resume on other data or weights is refused (resume.check_same_inputs)
        self.inputs: dict[str, str | None] | None = None
        self._window_loss: list[torch.Tensor] = []  # per batch since the last logged window
        self._window_logits: list[torch.Tensor] = []
        self._window_targets: list[torch.Tensor] = []
        self._window_carried = (0, 0)  # (correct, seen) of a window a checkpoint cut, restored on resume
        self._direct = False
        self._clip_after_unscale = False  # clip in on_before_optimizer_step (16-mixed), not inline
        self._clock: TrainClock | _NoClock = _NoClock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def on_train_start(self) -> None:
        trainer = self.trainer
        listened = any(
            is_overridden(hook, callback, pl.Callback)
            for callback in trainer.callbacks
            for hook in STEP_HOOKS
        ) or any(is_overridden(hook, self, Classifier) for hook in STEP_HOOKS)  # a subclass's own hooks
        self._clock = find_clock(trainer) or _NoClock()
        scaled = getattr(trainer.precision_plugin, "scaler", None) is not None  # 16-mixed
        self._direct = isinstance(trainer.strategy, SingleDeviceStrategy) and not scaled and not listened
        # a gradient scaler unscales inside the wrapped step, just before on_before_optimizer_step: clip there.
        # Otherwise clip inline, before the step, so that the optimizer's step pre-hooks (the diagnostics) see the
        # clipped gradients (Lightning's plain precision runs on_before_optimizer_step after them, in the closure)
        self._clip_after_unscale = scaled
        # a window restored from a checkpoint was loaded before the module moved to its device
        self._window_loss = [loss.to(self.device) for loss in self._window_loss]

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Lightning calls this inside the wrapped optimizer step, after its gradient scaler (16-mixed) unscaled
        the gradients: clipping the scaled gradients in the training step would clip them `scale` (65536) times
        too hard, the flaw of Lightning's own manual-optimization recipe (pytorch-lightning issue 18089)."""
        if self._clip_after_unscale and self.clip_val is not None and not self.automatic_optimization:
            self.clip_gradients(optimizer, self.clip_val, self.clip_algorithm)

    def warm_up(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """One training step over one batch of each shape, through the code the training clock times, leaving no
        trace: parameters, optimizer state, the gradient scaler, random generators, buffers (batch-norm statistics)
        and gradients are as before. First-call costs (kernel selection and loading, allocator growth, the
        optimizer's first update, lazy initialization, torch.compile) are then paid here, outside the clock, by
        every job alike. So the step runs as training runs it: under the precision plugin's autocast (bf16 and fp16
        kernels, and the graph torch.compile traces), with the accumulation's loss scaling, the gradient scaler
        and clipping."""
        trainer = self._trainer
        optimizer = trainer.optimizers[0] if trainer is not None and trainer.optimizers else None
        precision = trainer.precision_plugin if trainer is not None else None
        scaler = getattr(precision, "scaler", None) if optimizer is not None else None
        saved_state = copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None
        saved_scaler = scaler.state_dict() if scaler is not None else None
        # what the optimizer step changes (parameters), or the forward pass (buffers)
        changed = (
            [*self.network.parameters(), *self.network.buffers()] if optimizer else [*self.network.buffers()]
        )
        saved = [tensor.detach().clone() for tensor in changed]
        devices = [self.device] if self.device.type == "cuda" else []
        context = precision.train_step_context() if precision is not None else contextlib.nullcontext()
        with torch.random.fork_rng(devices=devices), context:
            for x, y in batches:
                loss = F.cross_entropy(self.network(x), y)
                loss = loss / self.accumulate if self.accumulate > 1 else loss
                (scaler.scale(loss) if scaler is not None else loss).backward()
            if optimizer is not None:
                if self.clip_val is not None:
                    if scaler is not None:
                        scaler.unscale_(optimizer)
                    self.clip_gradients(optimizer, self.clip_val, self.clip_algorithm)
                _step_unobserved(optimizer, scaler)
        with torch.no_grad():
            for tensor, before in zip(changed, saved, strict=True):
                tensor.copy_(before)
        if optimizer is not None:
            optimizer.load_state_dict(saved_state)
        if scaler is not None:
            scaler.load_state_dict(saved_scaler)
        self.network.zero_grad(set_to_none=True)

    def training_step(self, batch: StepGroup | tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        steps = batch if isinstance(batch, StepGroup) else [[batch]]
        wrapped = self.optimizers()
        optimizer = wrapped.optimizer if self._direct else wrapped
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        clock = self._clock
        clock.start()
        for step in steps:  # fetching a step's batches is timed too
            optimizer.zero_grad(set_to_none=True)
            for x, y in step:
                logits = self.network(x)
                loss = F.cross_entropy(logits, y)
                self._count(loss, logits, y)
                scaled = loss / self.accumulate if self.accumulate > 1 else loss
                if self._direct:
                    scaled.backward()
                else:
                    self.manual_backward(scaled)
            if self.clip_val is not None and not self._clip_after_unscale:
                self.clip_gradients(optimizer, self.clip_val, self.clip_algorithm)
            optimizer.step()
            if self._direct:  # the wrapper counts its own steps; a direct step is counted here
                progress.increment_ready()
                progress.increment_completed()
            if self.global_step % self.log_every_n_steps == 0:
                clock.stop()  # logging is not training
                self._log_train_window()
                clock.start()
            self._step_schedulers("step")
        clock.stop()
        if self.trainer.fit_loop.epoch_loop._num_ready_batches_reached():
            self._step_schedulers(
                "epoch"
            )  # where Lightning steps them: after the epoch's last training batch

    def on_train_epoch_end(self) -> None:
        self._step_schedulers("epoch", plateau=True)  # after validation and the epoch-end callbacks

    def _step_schedulers(self, interval: str, plateau: bool = False) -> None:
        """What Lightning does for automatic optimization: step each scheduler at its interval; a plateau
        scheduler reads its monitored metric (and skips while it has not been logged yet)."""
        for config in self.trainer.lr_scheduler_configs:
            # manual optimization leaves config.reduce_on_plateau unset: tell by the scheduler's type
            on_plateau = isinstance(config.scheduler, ReduceLROnPlateau)
            if config.interval != interval or on_plateau != plateau:
                continue
            if not plateau:
                config.scheduler.step()
            elif (value := self.trainer.callback_metrics.get(config.monitor)) is not None:
                config.scheduler.step(value)

    def _count(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Keep the batch's loss, logits and targets until the window is logged: no device work and no host sync
        per step (the window's accuracy is computed once, when it is logged)."""
        self._window_loss.append(loss.detach())
        self._window_logits.append(logits.detach())
        self._window_targets.append(y)

    def _log_train_window(self) -> None:
        """The window's mean training loss, accuracy and the learning rate: to the loggers at once, and to the
        trainer's callback metrics (the divergence guard) and progress bar.

        Written here rather than through `self.log`, which costs about 0.5 ms per call on a CPU and hands the values
        to the loggers only after `on_train_batch_end`, that is after a checkpoint of the same step has been
        written: a run killed between the two lost that row for good (the resumed run starts after it)."""
        trainer = self.trainer
        loss = torch.stack(self._window_loss).mean()
        correct, seen = self._window_counts()
        accuracy = correct / seen
        lr = float(trainer.optimizers[0].param_groups[0]["lr"])
        self._window_loss, self._window_logits, self._window_targets = [], [], []
        self._window_carried = (0, 0)
        # one host sync per window
        loss_value, accuracy_value = torch.stack([loss.float(), accuracy.float()]).tolist()
        trainer.callback_metrics.update(
            {"train/loss": loss, "train/acc": accuracy, "lr": torch.tensor(lr, device=loss.device)}
        )
        trainer.progress_bar_metrics["train/loss"] = loss_value
        # Lightning's logger step for this iteration (the step before the optimizer step just taken)
        scalars = {
            "train/loss": loss_value,
            "train/acc": accuracy_value,
            "lr": lr,
            "epoch": trainer.current_epoch,
        }
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=trainer.global_step - 1)

    def _window_counts(self) -> tuple[torch.Tensor | int, int]:
        """(correct predictions, examples) of the training window so far; the count stays on the device."""
        correct, seen = self._window_carried
        if self._window_logits:
            targets = torch.cat(self._window_targets)
            correct = (torch.cat(self._window_logits).argmax(dim=1) == targets).sum() + correct
            seen += targets.shape[0]
        return correct, seen

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The running state the record needs that the module's state_dict leaves out, under its own key (so
        checkpoints written without it still load):
        - the training window the checkpoint cut (a checkpoint cadence that is not a multiple of log_every_n_steps
          falls inside a window; resumed without it, the window would average only the steps after the resume);
        - the best validation accuracy so far (torchmetrics keeps a metric's state out of state_dict, so
          val/acc_best would start over);
        - the metrics logged last (the trainer's callback metrics are not checkpointed: a run resumed close to its
          end may stop before it validates or logs again, and its record still needs them);
        - the fingerprints of the data and weights it trains on."""
        window = None
        if self._window_loss:
            correct, seen = self._window_counts()
            window = {"loss": torch.stack(self._window_loss).cpu(), "correct": int(correct), "seen": seen}
        best = float(self.val_acc_best.max_value) if self.val_acc_best.update_count else None
        logged = {
            name: float(value)
            for name, value in self.trainer.callback_metrics.items()
            if isinstance(value, (int, float)) or (isinstance(value, torch.Tensor) and value.numel() == 1)
        }
        checkpoint[RUNNING_STATE_KEY] = {
            "train_window": window,
            "val_acc_best": best,
            "logged": logged,
            "inputs": self.inputs,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(RUNNING_STATE_KEY) or {}
        window = state.get("train_window")
        self._window_loss, self._window_logits, self._window_targets = [], [], []
        self._window_carried = (0, 0)
        # the window is rank zero's (the rank that saves and logs); the other ranks' windows start afresh
        if window is not None and (self._trainer is None or self._trainer.is_global_zero):
            self._window_loss = list(window["loss"].unbind())  # moved to the device in on_train_start
            self._window_carried = (int(window["correct"]), int(window["seen"]))
        if state.get("val_acc_best") is not None:
            self.val_acc_best.reset()
            self.val_acc_best.update(float(state["val_acc_best"]))

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], loss: MeanMetric, accuracy) -> None:
        x, y = batch
        logits = self.network(x)
        loss.update(F.cross_entropy(logits, y), weight=y.shape[0])
        accuracy.update(logits, y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.val_loss, self.val_acc)

    def on_validation_epoch_end(self) -> None:
        acc = self.val_acc.compute()
        if not self.trainer.sanity_checking:
            self.val_acc_best.update(acc)
        self.log_dict(
            {
                "val/loss": self.val_loss.compute(),
                "val/acc": acc,
                "val/acc_best": self.val_acc_best.compute(),
            },
            prog_bar=True,
        )
        self.val_acc.reset()
        self.val_loss.reset()

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_loss, self.test_acc)

    def on_test_epoch_end(self) -> None:
        self.log_dict({"test/loss": self.test_loss.compute(), "test/acc": self.test_acc.compute()})
        self.test_acc.reset()
        self.test_loss.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        params = self.finetune.param_groups(self.optimizer_cfg) if self.finetune is not None else self.network
        optimizer = build_optimizer(self.optimizer_cfg, params)
        total_steps = optimizer_step_budget(self.trainer)
        scheduler = build_scheduler(self.scheduler_cfg, optimizer, total_steps)
        if scheduler is None:
            return {"optimizer": optimizer}
        return {"optimizer": optimizer, "lr_scheduler": {**scheduler, "name": "lr-scheduler"}}

    def configure_callbacks(self) -> list[pl.Callback]:
        """The fine-tuning callback (frozen norm layers, gradual unfreezing) travels with the module."""
        return self.finetune.callbacks() if self.finetune is not None else []
