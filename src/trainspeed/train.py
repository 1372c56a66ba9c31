"""`python -m trainspeed.train [overrides]` (add -m for a sweep): train one configuration per job."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from trainspeed.config_paths import CONFIG_NAME, config_dir, in_sweep
from trainspeed.errors import ConfigError, TrainspeedError, is_user_error
from trainspeed.lightning_refusal import refusal_message
from trainspeed.parallel_jobs import check_sweep_launcher, prepare_parallel_job
from trainspeed.process_exit import run_and_exit
from trainspeed.quiet import quiet_library_noise
from trainspeed.record.checkpoint_file import check_resume_checkpoint
from trainspeed.record.folder_lock import in_use, lock_folder, release_folder, secondary_rank
from trainspeed.record.folder_snapshot import FolderSnapshot
from trainspeed.record.run_folder import LAST_CHECKPOINT, launched_from, relative_inputs, sweep_folder_of
from trainspeed.resume import already_finished, resume_arguments, resumed_folder, sweep_job_plan
from trainspeed.run_mode import resolve_run_mode
from trainspeed.sweep_console import job_output_to_log, print_job_line, run_line, visible_stderr
from trainspeed.tracking.wandb_import import import_wandb_before_torch
from trainspeed.validation import record_refusal, validate

log = logging.getLogger("trainspeed")

JOB_IN_USE = "a job folder no other trainspeed process is working in (a resume of this job still running?)"
RESUME_IN_USE = "a run no other process is still training (wait for it to end, or stop it, then resume it)"
RESUME_ONE_RUN = (
    "resume= without -m to continue one run; a sweep continues when launched again with the same command and "
    "hydra.sweep.dir (it skips finished jobs and resumes killed ones)"
)
SWEEP_RUNNING = "a job whose sweep has ended (wait for it to end, then resume the job or re-launch the sweep)"


@hydra.main(version_base="1.3", config_path=config_dir(), config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> float | None:
    """Hydra's task function; returns the time-to-target seconds (for search sweepers), None when unreached.

    In a sweep a failing job is recorded (summary.json, status "failed") and the sweep goes on; the sweep's exit
    code says that something failed (see trainspeed.sweep_callbacks). A single run re-raises, so it exits non-zero.
    The config is validated first (trainspeed.validation); a refused run's folder gets a failed summary.json.
    A sweep job's library output goes to its log file and it prints one line when it ends (sweep_console).
    """
    if not in_sweep():
        seconds = _run(cfg)[0]
        if not secondary_rank():  # the other ranks of a DDP run share rank zero's folder and record
            print(run_line(Path(HydraConfig.get().runtime.output_dir)), flush=True)
        return seconds
    job_dir = Path(HydraConfig.get().runtime.output_dir)
    try:  # the job's own folder (sweep_callbacks.FolderLock locks the sweep's and a single run's)
        locked = lock_folder(job_dir, "hydra.runtime.output_dir", JOB_IN_USE)
    except ConfigError as err:
        return _job_failed(err, cfg)
    try:
        with job_output_to_log(job_dir):
            seconds, skipped = _run(cfg)
    finally:
        if locked:
            release_folder(job_dir)
    if not skipped:
        print_job_line()
    return seconds


def _run(cfg: DictConfig) -> tuple[float | None, bool]:
    """Validate, then train; (time-to-target seconds, whether a re-launched sweep skipped the job as done)."""
    started = time.perf_counter()
    try:
        if cfg.get("lr_find") is not None:  # read by `python -m trainspeed.lr_find` only
            raise ConfigError(
                "lr_find",
                OmegaConf.to_container(cfg.lr_find) if OmegaConf.is_config(cfg.lr_find) else cfg.lr_find,
                "lr_find.* with python -m trainspeed.lr_find (the learning-rate range test)",
                problem="python -m trainspeed.train does not read it",
            )
        validate(cfg)  # before torch is imported: a refused run costs a second, not a model build
        resolve_run_mode(cfg)  # target.stop and the validation cadence, as a run or as a sweep job
        check_sweep_launcher(cfg)
    except TrainspeedError as err:
        record_refusal(cfg, err, time.perf_counter() - started)  # Hydra made the folder: mark it failed
        return _job_failed(err, cfg), False
    quiet_library_noise()
    resume_from = None
    if in_sweep():  # a sweep re-launched into its own folder: skip what is done, resume what was killed
        hydra_cfg = HydraConfig.get()
        try:
            plan, done = sweep_job_plan(Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task))
        except TrainspeedError as err:  # a record of a newer trainspeed: left as it is
            return _job_failed(err, cfg), False
        if plan == "skip":
            print(
                f"trainspeed: skipping job {hydra_cfg.job.num}: already {done.status}",
                file=visible_stderr(),
            )
            return done.time_to_target.seconds, True
        if plan == "resume":
            resume_from = str(Path(hydra_cfg.runtime.output_dir) / LAST_CHECKPOINT)
    import_wandb_before_torch(cfg)  # cheaper before torch (tracking/wandb_import.py)
    from trainspeed.job import run_job  # torch and Lightning load only for a config that passed validation

    prepare_parallel_job(cfg)  # threads / GPU / DDP environment when jobs run side by side
    try:
        summary = run_job(cfg, resume_from=resume_from)
    except KeyboardInterrupt:  # Ctrl-C: run_job wrote the record and checkpoints/last.ckpt; a sweep stops too
        where = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else "the run folder"
        print(
            f"trainspeed: interrupted; record and last checkpoint written in {where}", file=visible_stderr()
        )
        raise SystemExit(130) from None
    except Exception as err:
        return _job_failed(err, cfg), False
    return summary.time_to_target.seconds, False


def _user_message(err: Exception, cfg: DictConfig) -> str:
    if isinstance(err, TrainspeedError):
        return str(err)
    return refusal_message(err, cfg)  # Lightning's MisconfigurationException, in config keys


def _job_failed(err: Exception, cfg: DictConfig) -> None:
    """A single run exits (code 2 and one line for a user error, else the traceback); a sweep goes on."""
    user_error = is_user_error(err) and not os.environ.get("HYDRA_FULL_ERROR")
    if not in_sweep():
        if not user_error:
            raise err
        print(f"trainspeed: error: {_user_message(err, cfg)}", file=sys.stderr)
        raise SystemExit(2) from None
    if user_error:
        job = HydraConfig.get().job.num
        print(f"trainspeed: job {job} failed: {_user_message(err, cfg)}", file=visible_stderr())
    else:
        log.error("job failed; the sweep goes on", exc_info=err)
    return None


def cli() -> NoReturn:
    """The console entry point: `resume=RUN_DIR` expands to that run's overrides and folder before Hydra parses;
    a finished run is left untouched (Hydra would rewrite its .hydra/ files). The process ends without the
    interpreter's module teardown (trainspeed.process_exit: about 1.2 s with torch loaded)."""
    run_and_exit(_cli)


def _warn_moved_inputs(run_dir: Path) -> None:
    """A resume from another folder than the run was launched from reads its relative paths from here."""
    origin = launched_from(run_dir)
    relative = relative_inputs(run_dir)
    if origin is None or not relative or origin.resolve() == Path.cwd().resolve():
        return
    print(
        f"trainspeed: warning: {run_dir} was launched from {origin}; its relative {', '.join(relative)} "
        f"{'is' if len(relative) == 1 else 'are'} read from {Path.cwd()} now (resume from {origin} to read the "
        "same files)",
        file=sys.stderr,
    )


def _cli() -> None:
    resumed = resumed_folder(sys.argv[1:])
    try:
        if resumed is not None and {"-m", "--multirun"} & set(sys.argv[1:]):
            raise ConfigError("resume", str(resumed), RESUME_ONE_RUN, problem="given to a sweep (-m)")
        if resumed is not None and resumed.is_dir():  # held until the process ends (record/folder_lock.py)
            lock_folder(resumed, "resume", RESUME_IN_USE)
            sweep = sweep_folder_of(resumed)  # a running sweep would rewrite the job's .hydra/ on reaching it
            if sweep is not None and in_use(sweep):
                running = f"its sweep {sweep} is still running"
                raise ConfigError("resume", str(resumed), SWEEP_RUNNING, problem=running)
        sys.argv[1:] = resume_arguments(sys.argv[1:])
        if resumed is not None:
            _warn_moved_inputs(resumed)
        finished = already_finished(sys.argv[1:])
        if not finished:
            check_resume_checkpoint(sys.argv[1:])  # before Hydra rewrites the run folder's .hydra/ files
    except TrainspeedError as err:
        kept = f"; {resumed} was left as it was" if resumed is not None and resumed.is_dir() else ""
        print(f"trainspeed: error: {err}{kept}", file=sys.stderr)
        raise SystemExit(2) from None
    if finished:
        print(f"trainspeed: {finished}")
        raise SystemExit(0)
    snapshot = FolderSnapshot(resumed) if resumed is not None and resumed.is_dir() else None
    try:
        main()
    except BaseException as err:
        # a resume that failed before it saved any training leaves the run's record as its checkpoint has it
        succeeded = isinstance(err, SystemExit) and err.code in (0, None)
        if not succeeded and snapshot is not None and not snapshot.trained() and snapshot.restore():
            print(
                f"trainspeed: the resume ended before it saved any training; {resumed} was put back as it was "
                "(its record unchanged)",
                file=sys.stderr,
            )
        raise


if __name__ == "__main__":
    cli()
