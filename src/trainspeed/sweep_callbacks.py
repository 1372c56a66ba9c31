"""Hydra callbacks: one process at a time in a run or sweep folder, a relaunch never puts other settings over a
job's record, and the exit code and last message of a sweep in which some job failed."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from trainspeed.errors import ConfigError
from trainspeed.parallel_jobs import SUBMITIT
from trainspeed.record.atomic import write_atomic
from trainspeed.record.folder_lock import in_use, lock_folder, release_folder, secondary_rank
from trainspeed.record.run_folder import (
    HYDRA_FOLDER,
    LAST_CHECKPOINT,
    METRICS_FILE,
    OVERRIDES_FILE,
    SWEEP_FILE,
    is_placement,
    training_overrides,
)
from trainspeed.record.summary import SUMMARY_FILE, RecordError, read_summary, summary_or_none
from trainspeed.sweep_console import outcome, planned_jobs

log = logging.getLogger("trainspeed")


def _failed(job_dir: Path) -> bool:
    try:
        summary = read_summary(job_dir)
    except RecordError as err:
        log.error("%s", err)
        return True
    return summary is None or summary.status == "failed"


def failed_jobs(sweep_dir: Path) -> list[Path]:
    """Job folders of a sweep whose record says failed, that have no record at all, or an unreadable one."""
    jobs = [p.parent.parent for p in sweep_dir.glob(f"*/{OVERRIDES_FILE}")]
    return sorted(j for j in jobs if _failed(j))


class ExitCodeOnFailure(Callback):
    """Ends a sweep with exit code 1 when any job failed (diverged runs are results, not failures).

    Hydra's own launcher would stop the sweep at the first exception; the task function records failures and
    goes on instead, so this callback is what tells a scheduler or CI that not everything succeeded.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failed = failed_jobs(Path(config.hydra.sweep.dir))
        if failed:
            log.error("%s", failure_message(failed, config))
            raise SystemExit(1)


def failure_message(failed: list[Path], config: DictConfig) -> str:
    """Each failed job with why (its record's error, or "no record") and where its output is: the job's log file,
    and under submitit the job processes' own output files, which alone hold a job's end-of-job line, a refusal or a
    crash there (the launching process shows none of it)."""
    lines = [f"{len(failed)} job(s) failed:"]
    lines += [f"  {job}: {outcome(summary_or_none(job))}" for job in failed]
    where = f"each job's log: <job folder>/{config.hydra.job.name}.log"
    launcher = str(config.hydra.launcher.get("_target_", ""))
    if launcher.startswith(SUBMITIT):
        folder = str(config.hydra.launcher.submitit_folder).replace("%j", "<job id>")
        where += f"; the output of each job's process: {folder}/<job id>_<task>_log.out and .err"
    return "\n".join([*lines, where])


def _recorded_overrides(job_dir: Path) -> list[str] | None:
    """The training overrides a job folder's run was made with (its summary's, else Hydra's saved ones)."""
    summary = summary_or_none(job_dir)
    if summary is not None and summary.overrides is not None:
        return list(summary.overrides)
    return training_overrides(job_dir)


def relaunch_conflict(config: DictConfig) -> str | None:
    """Why this sweep must not start in its folder: a job number whose folder already holds a run made with other
    overrides (Hydra numbers jobs by position, so a changed sweep - another value, one more seed - would write its
    jobs over the earlier records). None when every existing job folder holds the same job, or the sweep cannot be
    expanded ahead (another sweeper, a custom hydra.sweep.subdir)."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    subdir = OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir")
    if not sweep_dir.is_dir() or subdir != "${hydra.job.num}":
        return None
    jobs, _ = planned_jobs(config)
    for num, job in enumerate(jobs or []):
        recorded = _recorded_overrides(sweep_dir / str(num))
        planned = [o for o in job if not is_placement(o)]
        if recorded is None or recorded == planned:
            continue
        return (
            f"hydra.sweep.dir={sweep_dir} already holds job {num}, run with `{' '.join(recorded)}`, where this "
            f"sweep's job {num} is `{' '.join(planned)}`: a sweep re-launched into its folder must be the same sweep "
            f"(it then skips finished jobs and resumes killed ones). Give a changed sweep a new hydra.sweep.dir; "
            f"nothing was changed."
        )
    return None


def _file_bytes(folder: Path) -> dict[str, bytes]:
    return (
        {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()} if folder.is_dir() else {}
    )


class RelaunchGuard(Callback):
    """Refuses, before any job runs, a sweep whose folder holds records of other settings under its job numbers
    (relaunch_conflict): without it a changed sweep would overwrite them.

    A re-launch that passes skips the finished jobs, but Hydra writes each job's .hydra/ files before the job can
    look (with the re-launch's launcher, and its config defaults if they changed since): the record of a skipped
    job would then say it was made otherwise than it was. So the guard keeps the .hydra/ files of every finished
    job before the first job runs and puts them back, byte for byte, once a job has left its record as it was
    (skipped); Hydra's multirun.yaml likewise, when the re-launch ran nothing. (The callback object travels with
    the jobs to joblib's and submitit's processes, what it kept with it.)"""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[bytes | None, dict[str, bytes]]] = {}  # job: (summary.json, its .hydra/)
        self._multirun: bytes | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        conflict = relaunch_conflict(config)
        if conflict:
            print(f"trainspeed: error: {conflict}", file=sys.stderr)
            raise SystemExit(2)
        sweep_dir = Path(str(config.hydra.sweep.dir))
        for job in sweep_dir.iterdir() if sweep_dir.is_dir() else ():
            summary = job / SUMMARY_FILE
            if summary.is_file() and (job / HYDRA_FOLDER).is_dir():
                self._kept[str(job.resolve())] = (summary.read_bytes(), _file_bytes(job / HYDRA_FOLDER))
        multirun = sweep_dir / SWEEP_FILE
        self._multirun = multirun.read_bytes() if multirun.is_file() else None

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        job = Path(str(config.hydra.runtime.output_dir)).resolve()
        kept = self._kept.get(str(job))
        if kept is None or not _unchanged(job / SUMMARY_FILE, kept[0]):
            return  # a new job, or one that trained on: its .hydra/ is this launch's, on purpose
        folder = job / HYDRA_FOLDER
        for name, data in kept[1].items():
            if not _unchanged(folder / name, data):
                write_atomic(folder / name, data)
        for extra in set(_file_bytes(folder)) - set(kept[1]):
            (folder / extra).unlink()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        jobs = {str(p.parent.resolve()) for p in sweep_dir.glob(f"*/{HYDRA_FOLDER}")}
        untouched = all(_unchanged(Path(job) / SUMMARY_FILE, kept[0]) for job, kept in self._kept.items())
        if self._multirun is not None and untouched and jobs <= set(self._kept):  # every job skipped
            if not _unchanged(sweep_dir / SWEEP_FILE, self._multirun):
                write_atomic(sweep_dir / SWEEP_FILE, self._multirun)


def _unchanged(path: Path, data: bytes | None) -> bool:
    try:
        return path.read_bytes() == data
    except OSError:
        return data is None


RUN_IN_USE = (
    "a folder no other trainspeed process is working in (another hydra.run.dir, or wait for that run to end)"
)
# what says a folder holds a run (or, multirun.yaml, a sweep)
RUN_RECORD = (HYDRA_FOLDER, SUMMARY_FILE, METRICS_FILE, LAST_CHECKPOINT.parent)
SWEEP_RECORD = (SWEEP_FILE,)
RUN_EXISTS = (
    "a new folder, or resume={folder} to continue the run it holds (ckpt_path= to start from a checkpoint)"
)
SWEEP_IN_USE = (
    "a sweep folder no other trainspeed sweep is running in (wait for that sweep to end, or stop it, before "
    "re-launching it; or another hydra.sweep.dir)"
)


class FolderLock(Callback):
    """Locks the run folder (a run) or the sweep folder (a multirun) before Hydra writes anything into it, for as
    long as this process works there (trainspeed.record.folder_lock): a second process launched into a folder in
    use is refused with exit code 2 and changes nothing. A sweep is refused too while any of its job folders is in
    use (a resume of that job still running): Hydra rewrites a job folder's .hydra/ before the job itself can look.
    Each job of a sweep locks its own folder too (train.py)."""

    def __init__(self) -> None:
        self._taken: set[Path] = set()  # the folders this callback locked (a resume's is the entry point's)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(str(config.hydra.run.dir))
        self._lock(run_dir, "hydra.run.dir", RUN_IN_USE, "nothing was written")
        continued = config.get("resume") is not None or config.get("ckpt_path") is not None
        # (the ranks other than zero of a multi-process run start in rank zero's folder, which holds its run)
        holds = [name for name in (*RUN_RECORD, *SWEEP_RECORD) if (run_dir / name).exists()]
        if not continued and not secondary_rank() and holds:
            # a fresh run would replace the record there (.hydra/, metrics.csv, checkpoints, summary.json)
            sweep = SWEEP_FILE in holds
            accepted = (
                "a new folder (a sweep's jobs are resumed by launching the sweep again)"
                if sweep
                else (RUN_EXISTS.format(folder=run_dir))
            )
            refused = ConfigError(
                "hydra.run.dir",
                str(run_dir),
                accepted,
                problem=f"it already holds a {'sweep' if sweep else 'run'}",
            )
            self._refuse(run_dir, refused, "nothing was written")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release(Path(str(config.hydra.run.dir)))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        self._lock(sweep_dir, "hydra.sweep.dir", SWEEP_IN_USE, "nothing was changed")
        if any((sweep_dir / name).exists() for name in RUN_RECORD):  # a sweep's jobs go into sub-folders
            accepted = "a new folder, or the folder of a sweep"
            refused = ConfigError("hydra.sweep.dir", str(sweep_dir), accepted, problem="it holds a run")
            self._refuse(sweep_dir, refused, "nothing was changed")
        jobs = sweep_dir.iterdir() if sweep_dir.is_dir() else ()
        busy = sorted(str(job) for job in jobs if job.is_dir() and in_use(job))
        if busy:
            self._release(sweep_dir)
            print(
                f"trainspeed: error: hydra.sweep.dir={sweep_dir} holds job folders in use by another trainspeed "
                f"process: {', '.join(busy)}; wait for it to end (a resume of that job?), then re-launch the sweep; "
                "nothing was changed",
                file=sys.stderr,
            )
            raise SystemExit(2)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release(Path(str(config.hydra.sweep.dir)))

    def _lock(self, folder: Path, key: str, accepted: str, outcome: str) -> None:
        try:
            if lock_folder(folder, key, accepted):
                self._taken.add(folder)
        except ConfigError as err:
            print(f"trainspeed: error: {err}; {outcome}", file=sys.stderr)
            raise SystemExit(2) from None

    def _refuse(self, folder: Path, refused: ConfigError, outcome: str) -> None:
        self._release(folder)
        print(f"trainspeed: error: {refused}; {outcome}", file=sys.stderr)
        raise SystemExit(2)

    def _release(self, folder: Path) -> None:
        if folder in self._taken:
            self._taken.discard(folder)
            release_folder(folder)
