"""Read a sweep folder: one `Run` per job, from its summary.json, .hydra/overrides.yaml and metrics.csv.

Nothing here decides what a result means; a job that cannot be read becomes a run with status "unfinished"
and the reason in `error`, so it is counted in the report instead of silently dropped.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from trainspeed.errors import TrainspeedError

UNFINISHED = "unfinished"  # no (readable) summary.json: still running, killed or crashed before writing one


class NoJobsError(TrainspeedError):
    """The sweep folder is missing or holds no job."""


@dataclass
class Run:
    """One job of the sweep, as read from its folder."""

    job: str
    path: Path
    status: str  # completed | diverged | failed | unfinished
    overrides: list[str] | None  # None when the job records no overrides at all
    seed: str | None
    reached: bool = False
    seconds: float | None = None
    steps: float | None = None
    val_acc_best: float | None = None
    target_metric: str | None = None
    target_value: float | None = None
    error: str | None = None
    # metric name -> [(step, value)], in file order; only finite values
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def paired(self, x_metric: str, y_metric: str) -> list[tuple[float, float]]:
        """(x, y) points where both metrics were logged at the same step (e.g. train seconds and val acc)."""
        xs = dict(self.series.get(x_metric, []))
        return [(xs[s], y) for s, y in self.series.get(y_metric, []) if s in xs]


def override_key(override: str) -> str:
    """The config key an override sets: `+optimizer.lr=0.1` -> `optimizer.lr`."""
    return override.split("=", 1)[0].lstrip("+~")


def override_value(override: str) -> str:
    return override.split("=", 1)[1] if "=" in override else ""


def _number(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def find_job_dirs(sweep_dir: Path) -> list[Path]:
    """Job folders: Hydra job numbers, or any sub-folder holding a summary.json or .hydra/overrides.yaml."""
    if not sweep_dir.is_dir():
        raise NoJobsError(f"sweep folder {sweep_dir} does not exist (or is not a folder)")
    jobs = [
        p
        for p in sweep_dir.iterdir()
        if p.is_dir()
        and (
            p.name.isdigit() or (p / "summary.json").is_file() or (p / ".hydra" / "overrides.yaml").is_file()
        )
    ]
    if not jobs:
        raise NoJobsError(
            f"sweep folder {sweep_dir} holds no job (expected sub-folders 0, 1, ... with summary.json "
            "or .hydra/overrides.yaml)"
        )
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def read_overrides(job_dir: Path) -> list[str] | None:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return [str(o) for o in data] if isinstance(data, list) else []


def read_metrics_csv(path: Path) -> dict[str, list[tuple[float, float]]]:
    """Lightning CSVLogger's sparse table as metric -> [(step, value)]; tolerates empty or truncated files."""
    series: dict[str, list[tuple[float, float]]] = {}
    try:
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                step = _number(row.get("step"))
                if step is None:
                    continue  # a truncated last line, or not a metrics row
                for name, raw in row.items():
                    if name in (None, "step", "epoch") or not raw:
                        continue
                    value = _number(raw)
                    if value is not None:
                        series.setdefault(name, []).append((step, value))
    except (OSError, csv.Error, UnicodeDecodeError):
        pass
    return series


def _metrics_path(job_dir: Path) -> Path | None:
    direct = job_dir / "metrics.csv"
    if direct.is_file():
        return direct
    # CSVLogger's default layout (<save_dir>/<name>/version_N/metrics.csv), if a run kept it
    nested = sorted(job_dir.glob("**/metrics.csv"))
    return nested[0] if nested else None


def load_run(job_dir: Path) -> Run:
    """Everything the report needs from one job folder."""
    summary: dict | None = None
    error: str | None = None
    summary_path = job_dir / "summary.json"
    if summary_path.is_file():
        try:
            loaded = json.loads(summary_path.read_text())
            summary = loaded if isinstance(loaded, dict) else None
            if summary is None:
                error = "summary.json is not a JSON object"
        except (OSError, ValueError) as e:
            error = f"unreadable summary.json: {e}"
    else:
        error = "no summary.json (still running or killed)"

    overrides = read_overrides(job_dir)
    if overrides is None and summary is not None and isinstance(summary.get("overrides"), list):
        overrides = [str(o) for o in summary["overrides"]]
    seed = next((override_value(o) for o in overrides or [] if override_key(o) == "seed"), None)
    if seed is None and summary is not None and summary.get("seed") is not None:
        seed = str(summary["seed"])

    metrics_path = _metrics_path(job_dir)
    series = read_metrics_csv(metrics_path) if metrics_path else {}
    run = Run(
        job=job_dir.name,
        path=job_dir,
        status=UNFINISHED,
        overrides=overrides,
        seed=seed,
        error=error,
        series=series,
    )
    if summary is not None:
        run.status = str(summary.get("status") or UNFINISHED)
        run.error = summary.get("error") or None
        ttt = summary.get("time_to_target") or {}
        run.target_metric = ttt.get("metric")
        run.target_value = _number(ttt.get("target"))
        run.seconds = _number(ttt.get("seconds"))
        run.steps = _number(ttt.get("steps"))
        run.reached = bool(summary.get("reached_target")) and run.seconds is not None
        metrics = summary.get("metrics") or {}
        run.val_acc_best = _number(metrics.get("val/acc_best"))
    if run.val_acc_best is None:
        # a run without a summary still shows how far it got
        seen = [v for _, v in series.get("val/acc_best", []) + series.get("val/acc", [])]
        run.val_acc_best = max(seen) if seen else None
    return run


def collect(sweep_dir: Path) -> list[Run]:
    """All jobs of a sweep, in job-number order. Raises NoJobsError when there is none."""
    return [load_run(job_dir) for job_dir in find_job_dirs(Path(sweep_dir))]
