"""A trial's outcome from its jobs' records: the objective and how the trial ended.

The objective is the median time-to-target (training seconds) over the trial's seeds. A trial that did not reach
the target with every seed, diverged or failed is still a result: it is told to Optuna as +inf, worse than any trial
that reached, so the sampler learns to avoid it and the study goes on. A trial whose job the pruning budget stopped
is told as pruned (Optuna's own state), with the training seconds it had used as its last intermediate value.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from trainspeed.record.summary import RecordError, read_summary
from trainspeed.search.budget import read_stop

# the order in which one job's status decides the trial's: any failed seed makes the trial failed, and so on
STATUS_ORDER = ("failed", "pruned", "diverged", "missed", "reached")


@dataclass
class TrialOutcome:
    status: str  # reached | missed | diverged | failed | pruned
    value: float  # median seconds to the target when reached, else +inf
    seconds: list[float | None]  # each seed's time to target (None: not reached)
    train_seconds: float  # the most training seconds any seed used (the pruned trial's intermediate value)
    jobs: list[str]


def job_status(job_dir: Path) -> tuple[str, float | None, float]:
    """(status, seconds to target, training seconds) of one job, from summary.json and the budget's stop file."""
    try:
        summary = read_summary(job_dir)
    except RecordError:  # an unreadable record is no result
        summary = None
    if summary is None or summary.status == "failed":
        return "failed", None, float(summary.train_seconds or 0.0) if summary else 0.0
    train_seconds = float(summary.train_seconds or 0.0)
    if summary.reached_target and summary.time_to_target.seconds is not None:
        return "reached", float(summary.time_to_target.seconds), train_seconds
    if summary.stopped_by == "budget" or read_stop(job_dir) is not None:  # the file: records before version 3
        return "pruned", None, train_seconds
    return ("diverged" if summary.status == "diverged" else "missed"), None, train_seconds


def trial_outcome(job_dirs: list[Path]) -> TrialOutcome:
    results = [job_status(d) for d in job_dirs]
    statuses = {status for status, _, _ in results}
    status = next(s for s in STATUS_ORDER if s in statuses)
    seconds = [s for _, s, _ in results]
    value = statistics.median(seconds) if status == "reached" else math.inf  # type: ignore[type-var]
    return TrialOutcome(
        status=status,
        value=float(value),
        seconds=seconds,
        train_seconds=max((t for _, _, t in results), default=0.0),
        jobs=[str(d) for d in job_dirs],
    )
