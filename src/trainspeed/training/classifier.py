"""The LightningModule: cross-entropy classification with a lean training step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import DictConfig
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from trainspeed.optim.optimizers import build_optimizer
from trainspeed.optim.schedulers import build_scheduler

if TYPE_CHECKING:
    from trainspeed.training.finetune import FinetunePlan


class Classifier(pl.LightningModule):
    """Trains `network` on (x, y) batches; logs train/loss, train/acc, lr, val/loss, val/acc, val/acc_best, test/acc.

    The training step keeps its own cost small because training time is what the product measures: loss and
    correct counts accumulate on the device and are logged every `log_every_n_steps` optimizer steps (a `self.log`
    or a torchmetrics update per step would each cost about as much as a whole small step, and `.item()` would
    force a device sync).
    """

    def __init__(
        self,
        network: nn.Module,
        optimizer_cfg: DictConfig,
        scheduler_cfg: DictConfig,
        num_classes: int,
        log_every_n_steps: int = 10,
        finetune: FinetunePlan | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.finetune = finetune  # head / backbone parameter groups and freezing for pretrained weights
        self.optimizer_cfg, self.scheduler_cfg = optimizer_cfg, scheduler_cfg
        self.log_every_n_steps = max(int(log_every_n_steps), 1)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_acc_best = MaxMetric()
        self._loss_sum: torch.Tensor | None = None
        self._correct = self._seen = None
        self._steps_in_window = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self.network(x)
        loss = F.cross_entropy(logits, y)
        with torch.no_grad():
            correct = (logits.argmax(dim=1) == y).sum()
            if self._loss_sum is None:
                self._loss_sum, self._correct = loss.detach().clone(), correct
                self._seen = torch.tensor(y.shape[0], device=y.device)
            else:
                self._loss_sum += loss.detach()
                self._correct += correct
                self._seen += y.shape[0]
        self._steps_in_window += 1
        if (self.global_step + 1) % self.log_every_n_steps == 0:
            self._log_train_window()
        return loss

    def _log_train_window(self) -> None:
        mean_loss = self._loss_sum / self._steps_in_window
        self.log("train/loss", mean_loss, on_step=True, on_epoch=False, prog_bar=True)
        self.log("train/acc", self._correct / self._seen, on_step=True, on_epoch=False)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False)
        self._loss_sum = self._correct = self._seen = None
        self._steps_in_window = 0

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
        total_steps = int(self.trainer.estimated_stepping_batches)
        scheduler = build_scheduler(self.scheduler_cfg, optimizer, total_steps)
        if scheduler is None:
            return {"optimizer": optimizer}
        return {"optimizer": optimizer, "lr_scheduler": {**scheduler, "name": "lr-scheduler"}}

    def configure_callbacks(self) -> list[pl.Callback]:
        """The fine-tuning callback (frozen norm layers, gradual unfreezing) travels with the module."""
        return self.finetune.callbacks() if self.finetune is not None else []
