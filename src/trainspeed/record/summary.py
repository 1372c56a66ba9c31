"""summary.json: the run record that the report, sweep resume and reproduce read (contract in DESIGN.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from trainspeed.record.atomic import write_json_atomic
from trainspeed.record.environment import command_line, git_state, package_versions

SUMMARY_FILE = "summary.json"
STATUSES = ("completed", "diverged", "failed")
FINAL_METRICS = ("val/acc", "val/acc_best", "val/loss", "test/acc", "test/loss", "train/loss")


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else round(number, 6)


def final_metrics(
    callback_metrics: dict[str, Any], best: float | None, metric: str
) -> dict[str, float | None]:
    """The metrics the record keeps, as plain floats; the best value of the target metric is always kept."""
    metrics = {k: _number(callback_metrics[k]) for k in FINAL_METRICS if k in callback_metrics}
    if best is not None:
        metrics[f"{metric}_best"] = _number(best)
    return metrics


def build_summary(
    *,
    status: str,
    time_to_target: dict[str, Any] | None,
    target: dict[str, Any],
    metrics: dict[str, float | None],
    train_seconds: float,
    wall_seconds: float,
    steps: int,
    epochs: int,
    seed: int,
    overrides: list[str],
    device: str,
    error: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The summary dict in DESIGN.md's field order; time fields are null when the target was not reached."""
    assert status in STATUSES, status
    empty = dict.fromkeys(("seconds", "steps", "epochs", "samples"))
    return {
        "status": status,
        "reached_target": time_to_target is not None,
        "time_to_target": {
            "metric": target["metric"],
            "target": target["value"],
            **empty,
            **(time_to_target or {}),
        },
        "metrics": metrics,
        "train_seconds": round(train_seconds, 4),
        "wall_seconds": round(wall_seconds, 4),
        "steps": steps,
        "epochs": epochs,
        "seed": seed,
        "overrides": list(overrides),
        "device": device,
        "versions": package_versions(),
        "git": git_state(),
        "command": command_line(),
        "error": error,
        **(extra or {}),
    }


def write_summary(run_dir: str | Path, summary: dict[str, Any]) -> Path:
    path = Path(run_dir) / SUMMARY_FILE
    write_json_atomic(path, summary)
    return path


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's summary, or None when it has none (a run that is still going or was killed)."""
    path = Path(run_dir) / SUMMARY_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
