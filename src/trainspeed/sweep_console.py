"""A sweep's console: one line per job as it ends, over a progress bar, instead of each job's library chatter.

Each job prints its own line (so this works whichever launcher runs it, in this process or in worker processes),
and while it runs its output goes to its log file (`<job folder>/<job name>.log`, next to Hydra's log records):
Lightning's start-up messages, W&B's banner, progress bars. Warnings and errors stay on the console (and in the
file). The number of jobs comes from the `SweepConsole` Hydra callback, which counts them when the sweep starts
(Hydra's basic sweeper; with another sweeper the line shows the count done without a total).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from trainspeed.record.summary import Summary, summary_or_none

JOBS_ENV = "TRAINSPEED_SWEEP_JOBS"  # the sweep's job count, inherited by worker processes
AXES_ENV = "TRAINSPEED_SWEEP_AXES"  # the override keys the sweep varies, comma-separated
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
_LAUNCH_LINE = re.compile(r"^\s*#\d+ : ")  # the launchers' "#3 : optimizer=adam seed=0" before each job
LAUNCHER_LOGGERS = (
    "hydra._internal.core_plugins.basic_launcher",
    "hydra_plugins.hydra_joblib_launcher._core",
)

_visible_stderr: IO[str] | None = None  # the console's stderr while a sweep job's output goes to its log file


def visible_stderr() -> IO[str]:
    """Where a message the user must see goes: the console, also while a sweep job's chatter is redirected."""
    return _visible_stderr or sys.stderr


def planned_jobs(config: DictConfig) -> tuple[list[list[str]] | None, list[str]]:
    """Each job's overrides, in job-number order, as Hydra's basic sweeper will expand them (None: another sweeper,
    or an override Hydra will report itself), and the keys the sweep varies."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from trainspeed.report.collect import override_key

    sweeper = config.hydra.get("sweeper") or {}
    arguments = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    arguments += list(config.hydra.overrides.get("task") or [])
    try:
        overrides = OverridesParser.create().parse_overrides(arguments)
    except Exception:  # Hydra reports a bad override itself
        return None, []
    axes = [override_key(o.input_line) for o in overrides if o.is_sweep_override()]
    if sweeper.get("_target_") != BASIC_SWEEPER:
        return None, axes
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch], axes


def sweep_plan(config: DictConfig) -> tuple[int | None, list[str]]:
    """The number of jobs and the keys they vary, as Hydra's basic sweeper will expand them (None: unknown)."""
    jobs, axes = planned_jobs(config)
    return (None if jobs is None else len(jobs)), axes


def sweep_axes() -> list[str]:
    """The override keys this job's sweep varies. Set by the launching process when the sweep starts (AXES_ENV),
    which the job processes of every launcher inherit (joblib's and submitit's workers, a SLURM job under sbatch's
    default `--export=ALL`); else read from the sweep's own config, `multirun.yaml` in the sweep folder, which
    Hydra's basic sweeper writes before the first job starts. Empty when neither is there."""
    if AXES_ENV in os.environ:
        return [axis for axis in os.environ[AXES_ENV].split(",") if axis]
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return []
    saved = Path(HydraConfig.get().sweep.dir) / "multirun.yaml"
    return sweep_plan(OmegaConf.load(saved))[1] if saved.is_file() else []


class _DropLaunchLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _LAUNCH_LINE.match(record.getMessage())


class SweepConsole(Callback):
    """Counts the sweep's jobs for their progress lines, and drops the launchers' per-job start lines (each job
    prints one line as it ends instead)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        jobs, axes = sweep_plan(config)
        if jobs is not None:
            os.environ[JOBS_ENV] = str(jobs)
        os.environ[AXES_ENV] = ",".join(axes)
        for name in LAUNCHER_LOGGERS:  # a logger's filter outlives Hydra's re-configuring of the handlers
            logger = logging.getLogger(name)
            if not any(isinstance(f, _DropLaunchLines) for f in logger.filters):
                logger.addFilter(_DropLaunchLines())


def _console_handlers() -> list[logging.Handler]:
    """Hydra's job logging handlers that write to the terminal (not its log file)."""
    return [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]


def _log_file(run_dir: Path) -> Path:
    files = [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    inside = [Path(f) for f in files if Path(f).parent == run_dir]
    return inside[0] if inside else run_dir / f"{HydraConfig.get().job.name}.log"


@contextlib.contextmanager
def job_output_to_log(run_dir: Path) -> Iterator[None]:
    """While a sweep job runs: its stdout / stderr into its log file, only warnings and errors on the console
    (Python warnings are routed through logging so that they stay visible)."""
    global _visible_stderr
    run_dir.mkdir(parents=True, exist_ok=True)
    handlers = _console_handlers()
    levels = [h.level for h in handlers]
    with open(_log_file(run_dir), "a", buffering=1) as log_file:
        _visible_stderr = sys.stderr
        for handler in handlers:
            handler.setLevel(max(handler.level, logging.WARNING))
        logging.captureWarnings(True)
        try:
            with contextlib.redirect_stdout(log_file), contextlib.redirect_stderr(log_file):
                yield
        finally:
            logging.captureWarnings(False)
            for handler, level in zip(handlers, levels, strict=True):
                handler.setLevel(level)
            _visible_stderr = None


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "?"


def outcome(summary: Summary | None) -> str:
    """The job's result in a few words: time to target, else the best metric (and, for a job the search's budget
    stopped, that it was pruned), else why it stopped."""
    if summary is None:
        return "no record"
    ttt = summary.time_to_target
    if summary.reached_target and ttt.seconds is not None:
        return f"{summary.status}, target in {_number(ttt.seconds)} s ({ttt.steps} steps)"
    if summary.status == "completed":
        metric = ttt.metric or "val/acc"
        best_value = summary.metrics.get(f"{metric}_best", summary.metrics.get(metric))
        best = f"best {metric} {_number(best_value)}"
        if summary.stopped_by == "budget":
            over = f"training seconds {_number(summary.train_seconds)} over the budget {_number(summary.budget_seconds)}"
            return f"pruned ({over} s; {best})"
        if best_value is None:
            return "completed without a validation (no time to target)"
        return f"completed, target not reached ({best})"
    error = " ".join((summary.error or "").split())
    return f"{summary.status}: {error[:160]}" if error else summary.status


def job_line(run_dir: Path, job_num: int, overrides: list[str]) -> str:
    """`[bar] done/total  job N  overrides  outcome`, the bar drawn by rich."""
    from rich.console import Console
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    from trainspeed.report.collect import override_key

    total = int(os.environ[JOBS_ENV]) if os.environ.get(JOBS_ENV, "").isdigit() else None
    done = sum(1 for _ in run_dir.parent.glob("*/summary.json"))
    axes = sweep_axes()
    shown = [o for o in overrides if override_key(o) in axes] or overrides
    row = Table.grid(padding=(0, 1))
    count = f"{done}/{total}" if total else f"{done} done"
    if total:
        row.add_row(ProgressBar(total=total, completed=min(done, total), width=20), count)
    else:
        row.add_row(count)
    text = f"job {job_num}  {' '.join(shown) or '(defaults)'}  {outcome(summary_or_none(run_dir))}"
    console = Console(file=sys.stdout, width=max(len(text) + 40, 120), soft_wrap=True)
    with console.capture() as captured:
        console.print(row, end="")
    return f"{captured.get().rstrip()}  {text}"


def run_line(run_dir: Path) -> str:
    """What a single run prints as it ends: its outcome, the test accuracy when it was tested, and its folder."""
    summary = summary_or_none(run_dir)
    tested = summary.metrics.get("test/acc") if summary is not None else None
    test = f"; test/acc {_number(tested)}" if tested is not None else ""
    return f"trainspeed: {outcome(summary)}{test}; record in {run_dir}"


def print_job_line() -> None:
    """The line of the sweep job that just ended (its folder and overrides from Hydra)."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    print(job_line(run_dir, int(hydra_cfg.job.num), list(hydra_cfg.overrides.task)), flush=True)
