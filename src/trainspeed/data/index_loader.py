"""Mini-batches drawn by index from tensors that already live on the training device.

A torch DataLoader over a TensorDataset collates sample by sample, which costs more per step than the small networks
this tool compares; indexing the whole batch at once is a single gather on the device. For training, batches come
in groups of optimizer steps (see trainspeed.callbacks.stepped_loop), each step `accumulate` batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import torch

from trainspeed.step_groups import StepGroup, StepPlan


class EpochSeed:
    """Lightning calls `loader.sampler.set_epoch(epoch)` before each epoch; the shuffle order is seeded from it."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class IndexBatchLoader:
    """Iterates (x, y) batches; the order depends only on (seed, epoch), so a rerun or a resume sees the same batches.

    `resume_at()` lets a run resumed mid-epoch skip the steps it already trained on (the datamodule checkpoints
    the position). Under DDP each rank takes every `world_size`-th index of the shuffled order.

    With a `plan` it yields StepGroups and its length is the epoch's optimizer steps (Lightning is told the
    number of groups separately); without one, (x, y) batches.
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
        plan: StepPlan | None = None,
        accumulate: int = 1,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.sampler = EpochSeed()
        self.batch_sampler = None  # Lightning inspects DataLoader-like attributes; batching is done here
        self.plan, self.accumulate = plan, max(int(accumulate), 1)
        self._resume: dict[str, int] | None = None
        self._ends: list[int] = []  # epoch-local step at which each group handed out this epoch ends
        self._base = (0, 0)  # (groups, steps) done before this iteration started (a resumed epoch)

    @property
    def num_samples(self) -> int:
        n = len(self.y)
        return n // self.world_size if self.world_size > 1 else n

    @property
    def num_batches(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.num_batches // self.accumulate)

    def __len__(self) -> int:
        """Batches; with a plan of several steps per group, no length (TypeError): the number of groups differs by
        epoch, and Lightning, which takes a loader's length once, then tells the last group by looking ahead."""
        if self.plan is None:
            return self.num_batches
        if self.plan.size > 1:
            raise TypeError("the number of step groups differs by epoch")
        return self.steps_per_epoch

    def _start(self) -> tuple[int, int]:
        """(steps, groups) of this epoch already trained on, for a run resumed mid-epoch."""
        resume = self._resume
        if resume is None or resume["epoch"] != self.sampler.epoch:
            return 0, 0
        done = resume["batches_done"]
        if self.plan is None or self.plan.size == 1:  # Lightning restarts a finished epoch itself
            done %= max(len(self), 1)
        return done, resume.get("groups_done", done)

    def shapes(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One batch of each size an epoch has (the full one and a partial last one), for warm-up; gathered by
        index as training batches are, so that the warm-up runs the gather too."""
        sizes = {min(self.batch_size, self.num_samples)}
        if self.num_samples % self.batch_size and not self.drop_last:
            sizes.add(self.num_samples % self.batch_size)
        order = torch.arange(max(sizes), device=self.x.device)
        return [self._batch(order[:size], 0) for size in sorted(sizes, reverse=True)]

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

    def _batch(self, order: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = order[i * self.batch_size : (i + 1) * self.batch_size]
        return self.x[idx], self.y[idx]

    def __iter__(self) -> Iterator[Any]:
        order = self._order()
        start, groups_done = self._start()
        self._resume = None
        if self.plan is None:
            for i in range(start, self.num_batches):
                yield self._batch(order, i)
            return
        self._base, self._ends = (groups_done, start), []
        steps, a, batches = self.steps_per_epoch, self.accumulate, self.num_batches
        fetch = partial(self._batch, order)
        pos = start
        for end in self.plan.group_ends(self.sampler.epoch * steps, start, steps):
            first, last = pos * a, min(end * a, batches)  # the group's batches
            group = [range(s * a, min((s + 1) * a, batches)) for s in range(pos, end)]
            samples = min(last * self.batch_size, self.num_samples) - first * self.batch_size
            self._ends.append(end)
            yield StepGroup(group, fetch, end, samples)
            pos = end

    def steps_done(self, groups_done: int) -> int:
        """Optimizer steps of this epoch covered by its first `groups_done` groups (for the checkpoint)."""
        base_groups, base_steps = self._base
        if self.plan is None or groups_done <= base_groups:
            return groups_done if self.plan is None else base_steps
        return self._ends[min(groups_done - base_groups, len(self._ends)) - 1]

    def resume_at(self, position: dict[str, Any]) -> None:
        """The next iteration over `position["epoch"]` starts after the steps already trained on."""
        self._resume = {key: int(value) for key, value in position.items()}
