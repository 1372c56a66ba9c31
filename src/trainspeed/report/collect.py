"""Read a sweep folder: one `Run` per job, from its summary.json, .hydra/overrides.yaml and metrics.csv.

Nothing here decides what a result means; a job that cannot be read becomes a run with status "unfinished"
and the reason in `error`, so it is counted in the report instead of silently dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from trainspeed.errors import TrainspeedError
from trainspeed.options import metric_mode
from trainspeed.record.run_folder import (
    OVERRIDES_FILE,
    launched_target_mode,
    metrics_path,
    override_key,
    override_value,
    read_metrics_csv,
    training_overrides,
)
from trainspeed.record.summary import SUMMARY_FILE, RecordError, Summary, read_summary

__all__ = ["Run", "collect", "override_key", "override_value", "read_metrics_csv"]

UNFINISHED = "unfinished"  # no (readable) summary.json: still running, killed or crashed before writing one


class NoJobsError(TrainspeedError):
    """The sweep folder is missing or holds no job."""


class MixedTargetsError(TrainspeedError):
    """The sweep's runs measured time to different targets: one ranking cannot compare them."""


@dataclass
class Run:
    """One job of the sweep, as read from its folder."""

    job: str
    path: Path
    status: str  # completed | diverged | failed | unfinished
    overrides: list[str] | None  # None when the job records no overrides at all
    seed: str | None
    reached: bool = False
    pruned: bool = False  # an Optuna search's budget stopped it (summary stopped_by "budget"): not reached
    seconds: float | None = None
    steps: float | None = None
    val_acc_best: float | None = None
    target_metric: str | None = None
    target_value: float | None = None
    target_mode: str | None = None  # max (reach at least target_value) or min (at most)
    error: str | None = None
    # metric name -> [(step, value)], in file order; only finite values
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def paired(self, x_metric: str, y_metric: str) -> list[tuple[float, float]]:
        """(x, y) points where both metrics were logged at the same step (e.g. train seconds and val acc)."""
        xs = dict(self.series.get(x_metric, []))
        return [(xs[s], y) for s, y in self.series.get(y_metric, []) if s in xs]


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
        if p.is_dir() and (p.name.isdigit() or (p / SUMMARY_FILE).is_file() or (p / OVERRIDES_FILE).is_file())
    ]
    if not jobs:
        raise NoJobsError(
            f"sweep folder {sweep_dir} holds no job (expected sub-folders 0, 1, ... with summary.json "
            "or .hydra/overrides.yaml)"
        )
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def unreadable(runs: list[Run]) -> list[Run]:
    """The jobs whose summary.json exists but cannot be read (damaged, cut short, of a newer trainspeed)."""
    return [r for r in runs if r.status == UNFINISHED and (r.path / SUMMARY_FILE).is_file()]


def _read(job_dir: Path) -> tuple[Summary | None, str | None]:
    """The job's summary, or why there is none."""
    try:
        summary = read_summary(job_dir)
    except RecordError as err:
        return None, str(err)
    return summary, None if summary is not None else f"no {SUMMARY_FILE} (still running or killed)"


def load_run(job_dir: Path) -> Run:
    """Everything the report needs from one job folder."""
    summary, error = _read(job_dir)
    overrides = training_overrides(job_dir)
    if overrides is None and summary is not None and summary.overrides is not None:
        overrides = [o for o in summary.overrides]
    seed = next((override_value(o) for o in overrides or [] if override_key(o) == "seed"), None)
    if seed is None and summary is not None and summary.seed is not None:
        seed = str(summary.seed)

    path = metrics_path(job_dir)
    series = read_metrics_csv(path) if path else {}
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
        ttt = summary.time_to_target
        run.status = summary.status
        run.error = summary.error or None
        run.target_metric = ttt.metric
        run.target_value = _number(ttt.target)
        run.target_mode = (
            metric_mode(ttt.metric, launched_target_mode(job_dir) or "auto") if ttt.metric else None
        )
        run.seconds = _number(ttt.seconds)
        run.steps = _number(ttt.steps)
        # a failed job is not a result, whatever it measured before it failed (the ranking counts it as failed)
        run.reached = (
            summary.reached_target and run.seconds is not None and run.status in ("completed", "diverged")
        )
        run.pruned = not run.reached and summary.stopped_by == "budget"
        run.val_acc_best = _number(summary.metrics.get("val/acc_best"))
    if run.val_acc_best is None:
        # a run without a summary still shows how far it got
        seen = [v for _, v in series.get("val/acc_best", []) + series.get("val/acc", [])]
        run.val_acc_best = max(seen) if seen else None
    return run


def target_text(metric: str | None, mode: str | None, value: float | None) -> str:
    """`val/acc ≥ 0.95`, `val/loss ≤ 0.3`."""
    return f"{metric or 'val/acc'} {'≤' if mode == 'min' else '≥'} {'?' if value is None else f'{value:g}'}"


def common_target(runs: list[Run]) -> tuple[str, str, float | None] | None:
    """(metric, mode, value) of the target every measured run (completed or diverged) timed itself against; None
    when none recorded one. Raises MixedTargetsError, naming each target and its jobs, when they differ: seconds
    to 0.9 and seconds to 0.95 (or to a loss) are not one measurement, and no ranking or test can mix them."""
    jobs: dict[tuple[str, str, float | None], list[str]] = {}
    for run in runs:
        if run.status in ("completed", "diverged") and run.target_metric:
            key = (run.target_metric, run.target_mode or "max", run.target_value)
            jobs.setdefault(key, []).append(run.job)
    if len(jobs) > 1:
        each = "; ".join(f"{target_text(*key)}: jobs {', '.join(names)}" for key, names in jobs.items())
        raise MixedTargetsError(
            f"the sweep's runs were timed to different targets ({each}); a report ranks runs of one target only: "
            "launch the sweep with one target (target.metric=..., target.value=...), or one sweep per target"
        )
    return next(iter(jobs), None)


def collect(sweep_dir: Path) -> list[Run]:
    """All jobs of a sweep, in job-number order. Raises NoJobsError when there is none."""
    return [load_run(job_dir) for job_dir in find_job_dirs(Path(sweep_dir))]
