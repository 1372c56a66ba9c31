"""The LightningDataModule: splits prepared once on the host, moved to the training device in setup()."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from trainspeed.callbacks.stepped_loop import find_stepped_loop
from trainspeed.data.index_loader import IndexBatchLoader
from trainspeed.data.sources import load_splits
from trainspeed.data.splits import Splits, resize, standardize
from trainspeed.record.inputs import data_fingerprint


class TensorDataModule(pl.LightningDataModule):
    """Holds every split as tensors on the training device and batches them by index."""

    def __init__(
        self, splits: Splits, batch_size: int, eval_batch_size: int, seed: int, fingerprint: str | None = None
    ) -> None:
        super().__init__()
        self.fingerprint = fingerprint  # of the splits as loaded (record/inputs.py), for the run record
        self.splits, self.batch_size, self.eval_batch_size, self.seed = (
            splits,
            batch_size,
            eval_batch_size,
            seed,
        )
        self._on_device: Splits | None = None
        self._train_loader: IndexBatchLoader | None = None
        self._resume_position: dict[str, int] | None = None

    @property
    def num_classes(self) -> int:
        return self.splits.num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.splits.input_shape

    def setup(self, stage: str | None = None) -> None:
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if self._on_device is None or self._on_device.train[0].device != device:
            self._on_device = self.splits.map(lambda x, y: (x.to(device), y.to(device)))

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> IndexBatchLoader:
        if self._on_device is None:
            self.setup()
        x, y = getattr(self._on_device, split)
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        # overfit_batches must see the same batches every epoch, so it turns shuffling off
        shuffle = shuffle and not (trainer is not None and trainer.overfit_batches > 0)
        return IndexBatchLoader(x, y, batch_size, shuffle, seed=self.seed, rank=rank, world_size=world)

    def train_dataloader(self) -> IndexBatchLoader:
        self._train_loader = loader = self._loader("train", self.batch_size, shuffle=True)
        stepped = find_stepped_loop(self.trainer)
        if stepped is not None:  # groups of optimizer steps, each `accumulate` batches
            loader.accumulate = stepped.accumulate
            loader.plan = stepped.make_plan(self.trainer, loader.steps_per_epoch)
        if self._resume_position is not None:
            loader.resume_at(self._resume_position)
            # the epoch is known now: Lightning may fetch the first group before it sets the epoch
            loader.sampler.set_epoch(self._resume_position["epoch"])
        return loader

    # The training position is checkpointed here rather than through Lightning's stateful-dataloader hooks, which
    # miss a loader created early (Trainer.estimated_stepping_batches builds one before the checkpoint is restored).
    # It counts the iterations Lightning finished processing, not those handed out: a checkpoint written on Ctrl-C
    # may come after a batch was fetched but before it was trained on. "batches_done" counts optimizer steps.
    def state_dict(self) -> dict[str, int]:
        if self.trainer is None or self._train_loader is None:
            return {}
        loader = self._train_loader
        groups = int(self.trainer.fit_loop.epoch_loop.batch_progress.current.processed)
        steps, epoch = loader.steps_done(groups), loader.sampler.epoch
        if loader.plan is not None:
            # Ctrl-C can stop a group of steps part-way: the steps it already applied count, not only whole groups
            steps = max(steps, int(self.trainer.global_step) - epoch * loader.steps_per_epoch)
        if steps >= loader.steps_per_epoch:  # the epoch is done: resume at the next one's start
            return {"epoch": epoch + 1, "batches_done": 0, "groups_done": 0}
        return {"epoch": epoch, "batches_done": steps, "groups_done": groups}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if state_dict:
            self._resume_position = dict(state_dict)
            if self._train_loader is not None:
                self._train_loader.resume_at(self._resume_position)

    def val_dataloader(self) -> IndexBatchLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> IndexBatchLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)


def build_datamodule(cfg: DictConfig, seed: int) -> TensorDataModule:
    """Load, split, standardize and resize the data set described by the `data` config group."""
    splits = load_splits(cfg, seed)
    fingerprint = data_fingerprint(splits)
    splits = resize(standardize(splits), cfg.get("image_size"))
    return TensorDataModule(splits, int(cfg.batch_size), int(cfg.eval_batch_size), seed, fingerprint)
