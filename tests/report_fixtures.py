"""Hand-made sweep folders laid out exactly as a Hydra multirun of trainspeed.train writes them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

TARGET = 0.9
CSV_FIELDS = sorted(
    [
        "epoch",
        "step",
        "lr",
        "train/loss",
        "train/acc",
        "val/loss",
        "val/acc",
        "val/acc_best",
        "time/train_seconds",
        "test/acc",
    ]
)  # (CSVLogger sorts its header)


def write_metrics_csv(
    path: Path, seconds_to_target: float | None, steps: int = 100, val_best: float = 0.95
) -> None:
    """A sparse CSVLogger table: train rows every 10 steps, a validation row (with the training-seconds clock)
    every 20 steps, and test/acc at the end. Val acc crosses TARGET at `seconds_to_target` when given."""
    rows: list[dict] = []
    end_seconds = (seconds_to_target or 10.0) * 2
    for step in range(9, steps, 10):
        rows.append(
            {
                "epoch": step // 20,
                "step": step,
                "lr": 0.01,
                "train/loss": 2.0 / (1 + step / 10),
                "train/acc": min(0.99, step / steps),
            }
        )
        if (step + 1) % 20 == 0:
            t = end_seconds * (step + 1) / steps
            if seconds_to_target is None:
                acc = val_best * (step + 1) / steps
            else:  # linear through (seconds_to_target, TARGET), capped at val_best
                acc = min(val_best, TARGET * t / seconds_to_target)
            rows.append(
                {
                    "epoch": step // 20,
                    "step": step,
                    "val/loss": 1 - acc,
                    "val/acc": acc,
                    "val/acc_best": acc,
                    "time/train_seconds": t,
                }
            )
    rows.append({"epoch": steps // 20, "step": steps, "test/acc": val_best - 0.01})
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def make_job(
    sweep: Path,
    num: int | str,
    overrides: list[str],
    *,
    seconds: float | None = None,
    status: str = "completed",
    val_best: float = 0.95,
    error: str | None = None,
    summary: bool = True,
    metrics: str = "full",  # full | empty | truncated | none
    budget: float | None = None,  # set: an Optuna search's budget of that many seconds stopped the job
    target: float = TARGET,
    metric: str = "val/acc",
) -> Path:
    """One job folder. `seconds` set = reached the target in that many training seconds (steps = 10×seconds)."""
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    seed = next((int(o.split("=")[1]) for o in overrides if o.startswith("seed=")), 0)
    reached = seconds is not None
    if summary:
        doc = {
            "status": status,
            "reached_target": reached,
            "time_to_target": {
                "metric": metric,
                "target": target,
                "seconds": seconds,
                "steps": round(seconds * 10) if reached else None,
                "epochs": seconds / 2 if reached else None,
                "samples": round(seconds * 640) if reached else None,
                "resolution_steps": 20 if reached else None,
            },
            "metrics": {
                "val/acc": val_best - 0.005,
                "val/acc_best": val_best,
                "val/loss": 0.2,
                "test/acc": 0.9,
            },
            "train_seconds": (seconds or 10.0) * 2,
            "wall_seconds": (seconds or 10.0) * 3,
            "steps": 100,
            "epochs": 5,
            "seed": seed,
            "overrides": overrides,
            "device": "cpu",
            "versions": {"python": "3.11"},
            "git": {"commit": "abc", "dirty": False},
            "error": error,
        }
        if budget is not None:
            doc.update(schema_version=3, stopped_by="budget", budget_seconds=budget)
        (job / "summary.json").write_text(json.dumps(doc))
    if metrics == "full":
        write_metrics_csv(job / "metrics.csv", seconds, val_best=val_best)
    elif metrics == "empty":
        (job / "metrics.csv").write_text("")
    elif metrics == "truncated":
        write_metrics_csv(job / "metrics.csv", seconds, val_best=val_best)
        text = (job / "metrics.csv").read_text()
        (job / "metrics.csv").write_text(text[: len(text) // 2])
    return job


# The ranking sweep: optimizer × seed 0..2. Per optimizer, per seed: seconds to target, or a status word.
RANKING_GRID: dict[str, list] = {
    "nesterov": [2.0, 6.0, 3.0],  # all reached, median 3      -> rank 1
    "adam": [3.0, 4.0, 5.0],  # all reached, median 4          -> rank 2
    "rmsprop": [1.0, 1.5, None],  # 2/3 reached (fastest, but not all seeds) -> rank 3
    "sgd": [2.0, "diverged", "failed"],  # 1/3 reached         -> rank 4
    "lamb": [None, None, "unfinished"],  # 0/3, 1 failed, val best 0.85 -> rank 6 (fewer failed first)
    "adagrad": [None, None, None],  # 0/3, none failed, val best 0.80    -> rank 5
}
RANKING_ORDER = ["nesterov", "adam", "rmsprop", "sgd", "adagrad", "lamb"]


def ranking_sweep(sweep: Path) -> Path:
    num = 0
    for opt, cells in RANKING_GRID.items():
        for seed, cell in enumerate(cells):
            overrides = [f"optimizer={opt}", f"seed={seed}", "trainer.max_epochs=5"]
            val_best = {"lamb": 0.85, "adagrad": 0.80}.get(opt, 0.95)
            if isinstance(cell, float):
                make_job(sweep, num, overrides, seconds=cell, val_best=val_best)
            elif cell is None:
                make_job(sweep, num, overrides, val_best=val_best)
            elif cell == "diverged":
                make_job(
                    sweep, num, overrides, status="diverged", val_best=0.3, error="loss is nan at step 40"
                )
            elif cell == "failed":
                make_job(
                    sweep,
                    num,
                    overrides,
                    status="failed",
                    error="RuntimeError: CUDA out of memory\n| trace",
                    metrics="truncated",
                )
            else:  # killed before writing a summary; the CSV logger had not flushed yet
                make_job(sweep, num, overrides, summary=False, metrics="empty")
            num += 1
    return sweep


# optimizer × optimizer.lr × seed 0..1: seconds per seed, None = not reached, "d" = diverged.
LR_GRID: dict[tuple[str, str], list] = {
    ("adam", "0.001"): [5.0, 6.0],
    ("adam", "0.01"): [2.0, 3.0],  # adam's pick
    ("adam", "0.1"): ["d", "d"],
    ("sgd", "0.001"): [None, None],
    ("sgd", "0.01"): [3.0, None],  # fastest sgd time, but one seed missed: not the pick
    ("sgd", "0.1"): [4.0, 5.0],  # sgd's pick
}


def lr_sweep(sweep: Path) -> Path:
    num = 0
    for (opt, lr), cells in LR_GRID.items():
        for seed, cell in enumerate(cells):
            overrides = [f"optimizer={opt}", f"optimizer.lr={lr}", f"seed={seed}"]
            if cell == "d":
                make_job(sweep, num, overrides, status="diverged", val_best=0.1, error="loss is nan")
            else:
                make_job(sweep, num, overrides, seconds=cell, val_best=0.95 if cell else 0.5)
            num += 1
    return sweep
