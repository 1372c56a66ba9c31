"""Optimizer steps grouped for one Lightning iteration: the plan of where groups end, and the group itself.

Groups end on every step at which something must happen (logging, checkpoint, validation, max_steps, epoch end),
so running several steps per iteration changes no event's step. See trainspeed.callbacks.stepped_loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StepPlan:
    """How the optimizer steps of an epoch are grouped into Lightning iterations."""

    size: int = 1  # optimizer steps per iteration, at most
    every: tuple[int, ...] = ()  # global-step periods a group must end on (logging, checkpoints, validation)
    epoch_every: tuple[int, ...] = ()  # periods counted from the epoch's start (validation per epoch)
    stop_at: int | None = None  # trainer.max_steps

    def group_ends(self, epoch_start: int, start: int, steps: int) -> Iterator[int]:
        """Epoch-local end of each group, for an epoch of `steps` optimizer steps resumed at `start`;
        `epoch_start` is the global step at which the epoch began."""
        pos = start
        while pos < steps:
            now = epoch_start + pos
            end = min(pos + self.size, steps)
            for period in self.every:
                end = min(end, pos + period - now % period)
            for period in self.epoch_every:
                end = min(end, pos + period - pos % period)
            if self.stop_at is not None and self.stop_at > now:
                end = min(end, pos + self.stop_at - now)
            yield end
            pos = end

    def groups(self, epoch_start: int, steps: int) -> int:
        return sum(1 for _ in self.group_ends(epoch_start, 0, steps))


class StepGroup:
    """What the training loader yields: the optimizer steps of one Lightning iteration. Iterating it yields each
    step's list of (x, y) batches, indexed from the device tensors only then, inside the training step, so that the
    training clock counts data fetching as a plain loop's timing does.

    A plain class rather than a tuple or dataclass, so that Lightning's batch transfer and batch-size inference
    leave it alone (the tensors already live on the device)."""

    __slots__ = ("_fetch", "_steps", "end", "samples")

    def __init__(
        self, steps: list[range], fetch: Callable[[int], tuple[Any, Any]], end: int, samples: int
    ) -> None:
        self._steps, self._fetch = steps, fetch  # batch indices of each step; fetch(i) is batch i
        self.end, self.samples = end, samples  # epoch-local step after the group; samples in it

    def __len__(self) -> int:
        return len(self._steps)

    def __iter__(self) -> Iterator[list[tuple[Any, Any]]]:
        for batches in self._steps:
            yield [self._fetch(i) for i in batches]
