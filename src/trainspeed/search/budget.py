"""The pruning budget of a search: stop a job whose training time already exceeds the best trial's x a factor.

The sweeper writes the budget (seconds) into a small JSON file in the sweep folder whenever a trial finishes with a
new best; each job reads it at the start of training and again at every validation, so the budget reaches jobs
that run in the launching process, in joblib workers, or on other machines of a shared file system alike. Only
training seconds count (the TrainClock's), the same clock as the objective.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from trainspeed.callbacks.train_clock import find_clock
from trainspeed.record.atomic import write_json_atomic

log = logging.getLogger("trainspeed")

BUDGET_FILE = "optuna_budget.json"  # in the sweep folder, written by the sweeper
STOPPED_FILE = "budget_stop.json"  # in a job folder: the job was stopped by the budget (the trial is pruned)


def write_budget(sweep_dir: Path, seconds: float | None) -> None:
    write_json_atomic(Path(sweep_dir) / BUDGET_FILE, {"max_train_seconds": seconds})


def read_budget(path: Path) -> float | None:
    try:
        seconds = json.loads(Path(path).read_text()).get("max_train_seconds")
    except (OSError, ValueError, AttributeError):
        return None
    return float(seconds) if isinstance(seconds, int | float) else None


def read_stop(job_dir: Path) -> dict | None:
    """What the budget stop recorded in a job folder (seconds, budget), or None if the budget did not stop it."""
    try:
        return json.loads((Path(job_dir) / STOPPED_FILE).read_text())
    except (OSError, ValueError):
        return None


class TrainSecondsBudget(Callback):
    """Stops training at a validation once the training clock has passed the budget in `budget_file` (no file,
    no budget). Checked where the clock is paused, so the resolution is the validation cadence, like the
    time-to-target measurement's."""

    def __init__(self, budget_file: str, run_dir: str) -> None:
        self.budget_file = Path(budget_file)
        self.run_dir = Path(run_dir)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        clock = find_clock(trainer)
        if trainer.sanity_checking or trainer.should_stop or clock is None:
            return
        budget = read_budget(self.budget_file)  # re-read: a concurrent trial may have set a tighter one
        if budget is None or clock.seconds <= budget:
            return
        trainer.should_stop = True
        if trainer.is_global_zero:
            write_json_atomic(
                self.run_dir / STOPPED_FILE, {"train_seconds": round(clock.seconds, 4), "budget": budget}
            )
        log.info("stopped by the search budget: %.3f s of training > %.3f s", clock.seconds, budget)
