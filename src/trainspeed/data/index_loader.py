"""Mini-batches drawn by index from tensors that already live on the training device.

A torch DataLoader over a TensorDataset collates sample by sample, which costs more per step than the small networks
this tool compares; indexing the whole batch at once is a single gather on the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch


class EpochSeed:
    """Lightning calls `loader.sampler.set_epoch(epoch)` before each epoch; the shuffle order is seeded from it."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class IndexBatchLoader:
    """Iterates (x, y) batches; the order depends only on (seed, epoch), so a rerun or a resume sees the same batches.

    `resume_at()` lets a run resumed mid-epoch skip the batches it already trained on (the datamodule checkpoints
    the position). Under DDP each rank takes every `world_size`-th index of the shuffled order.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.sampler = EpochSeed()
        self.batch_sampler = None  # Lightning inspects DataLoader-like attributes; batching is done here
        self._resume: dict[str, int] | None = None

    @property
    def num_samples(self) -> int:
        n = len(self.y)
        return n // self.world_size if self.world_size > 1 else n

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _order(self) -> torch.Tensor:
        n = len(self.y)
        if not self.shuffle:
            order = torch.arange(n)
        else:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.sampler.epoch)
            order = torch.randperm(n, generator=generator)
        if self.world_size > 1:
            order = order[: self.num_samples * self.world_size][self.rank :: self.world_size]
        return order.to(self.x.device, non_blocking=True)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order()
        start = 0
        if self._resume is not None and self._resume["epoch"] == self.sampler.epoch:
            start = self._resume["batches_done"] % max(len(self), 1)
        self._resume = None
        for i in range(start, len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.x[idx], self.y[idx]

    def resume_at(self, position: dict[str, Any]) -> None:
        """The next iteration over `position["epoch"]` starts after the batches already handed out."""
        self._resume = {"epoch": int(position["epoch"]), "batches_done": int(position["batches_done"])}
