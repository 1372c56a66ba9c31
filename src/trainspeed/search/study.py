"""The Optuna study behind `hparams_search=optuna`: storage, sampler, and the ask -> launch -> tell loop.

Hydra's own Optuna sweeper (hydra-optuna-sweeper) pins Optuna 2.x, whose SQLite storage does not work with
SQLAlchemy 2 (which current Optuna needs); this loop is the part of it trainspeed needs, on current Optuna's
ask-and-tell interface. Jobs are launched through whatever Hydra launcher is configured (basic, joblib, submitit),
so trials run side by side and on clusters exactly like the jobs of a grid sweep.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import optuna
from optuna.trial import TrialState

from trainspeed.errors import ConfigError
from trainspeed.search.budget import write_budget
from trainspeed.search.outcome import TrialOutcome, trial_outcome
from trainspeed.search.sampler import make_sampler, sampler_seed
from trainspeed.search.settings import SearchSettings
from trainspeed.search.space import SearchSpace

log = logging.getLogger("trainspeed")

DB_FILE = "optuna.db"
JOURNAL = "journal:"


STORAGE_KEY = "hydra.sweeper.storage"
STORAGE_ACCEPTED = (
    "null (optuna.db in the sweep folder), an Optuna RDB URL whose driver is installed (sqlite:///path.db, "
    "postgresql://user@host/db, mysql://user@host/db) or journal:<file>"
)


def open_storage(url: str | None, sweep_dir: Path) -> optuna.storages.BaseStorage:
    """An SQLite file in the sweep folder by default; any Optuna RDB URL; `journal:<file>` for Optuna's journal
    file (the storage Optuna recommends for several processes writing one study without a database server).
    A storage that cannot be opened is a ConfigError naming hydra.sweeper.storage."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return _open_storage(url, sweep_dir)
    except (ImportError, ValueError, OSError, SQLAlchemyError) as err:
        problem = (str(err).strip().splitlines() or [type(err).__name__])[0]
        if not url:  # the default: name the file that would not open
            problem = f"{sweep_dir / DB_FILE}: {problem}"
        raise ConfigError(STORAGE_KEY, url, STORAGE_ACCEPTED, problem=problem) from None


def _open_storage(url: str | None, sweep_dir: Path) -> optuna.storages.BaseStorage:
    if not url:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(sweep_dir / DB_FILE).resolve()}"
    if url.startswith(JOURNAL):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len(JOURNAL) :].removeprefix("//"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    # SQLite: wait for a lock held by another process instead of failing at once
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    return optuna.storages.RDBStorage(url, engine_kwargs=engine)


def open_study(settings: SearchSettings, sweep_dir: Path) -> optuna.Study:
    """The study `study_name` of the storage, created when new, with this launch's sampler: seeded with the
    configured seed for a study without trials, else with one derived from the trials already in it, so that a
    continued study does not ask the same points again (search/sampler.py)."""
    if not settings.storage:
        check_study_kept(sweep_dir)
    storage = open_storage(settings.storage, sweep_dir)
    study = optuna.create_study(
        study_name=settings.study_name,
        storage=storage,
        sampler=optuna.samplers.RandomSampler(),  # replaced below, once the trials so far are known
        direction="minimize",
        load_if_exists=True,  # a relaunch, or another process on the same storage, continues the study
    )
    seed = sampler_seed(settings.sampler_seed, len(study.get_trials(deepcopy=False)))
    sampler = make_sampler(settings.sampler_name, seed, settings.sampler_kwargs)
    return optuna.load_study(study_name=settings.study_name, storage=storage, sampler=sampler)


def check_study_kept(sweep_dir: Path) -> None:
    """A sweep folder holding jobs keeps the study that ran them in its optuna.db: without it (deleted, emptied,
    or jobs of a sweep that was no search) a new study would start beside jobs it knows nothing of, its trials
    numbered anew and its record (optuna/study.json) rewritten without them. Checked before the file is opened,
    which would create it."""
    db = sweep_dir / DB_FILE
    jobs = next_job_index(sweep_dir) if sweep_dir.is_dir() else 0
    if jobs and (not db.is_file() or db.stat().st_size == 0):
        state = "is empty" if db.is_file() else "is missing"
        raise ConfigError(
            "hydra.sweep.dir",
            str(sweep_dir),
            "a new folder for a new search, or this folder with the optuna.db its jobs were run with",
            problem=f"it holds job folders up to {jobs - 1}, but its {DB_FILE} {state}: a new study would start "
            "beside jobs it knows nothing of",
        )


def check_same_space(study: optuna.Study, space: SearchSpace) -> None:
    """A continued study must sample each parameter as its earlier trials did: Optuna refuses a changed set of
    choices only once a trial asks for it (a traceback and a failed trial), so it is refused here, before anything
    is written. (A numeric range may move: Optuna's samplers allow that.)"""
    from optuna.distributions import check_distribution_compatibility

    for trial in study.get_trials(deepcopy=False):
        for key, earlier in trial.distributions.items():
            given = space.distributions.get(key)
            try:
                if given is not None:
                    check_distribution_compatibility(earlier, given)
            except ValueError as err:
                accepted = (
                    f"what the study's earlier trials sampled it from, {earlier} (a changed search space needs a "
                    "new hydra.sweep.dir or hydra.sweeper.study_name)"
                )
                raise ConfigError(key, str(given), accepted, problem=str(err)) from None


def fail_stale_trials(study: optuna.Study) -> None:
    """Mark failed the trials an earlier launch left running (killed: it could not tell them). Only for the
    study in the sweep folder's own optuna.db, which the sweep's folder lock keeps to this process: on a shared
    storage a running trial may be another process's."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, "status", "killed")
        study.tell(trial.number, state=TrialState.FAIL)
        log.info("trial %d was left running by a launch that was killed: marked failed", trial.number)


def space_size(space: SearchSpace) -> int | None:
    """How many points the search space has; None when it has a continuous interval."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    size = 1
    for dist in space.distributions.values():
        if isinstance(dist, CategoricalDistribution):
            size *= len(dist.choices)
        elif isinstance(dist, IntDistribution):
            size *= (dist.high - dist.low) // dist.step + 1
        elif isinstance(dist, FloatDistribution) and dist.step is not None:
            size *= round((dist.high - dist.low) / dist.step) + 1
        else:
            return None
    return size


def space_exhausted(study: optuna.Study, space: SearchSpace) -> bool:
    """Whether the study's finished trials have tried every point of a finite space already: an exhaustive
    sampler (BruteForceSampler) would otherwise ask one of them again before it noticed."""
    size = space_size(space)
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    tried = {tuple(sorted(t.params.items())) for t in finished if set(t.params) == set(space.distributions)}
    return size is not None and len(tried) >= size


def next_job_index(sweep_dir: Path) -> int:
    """After the highest numbered job folder: a relaunch into the same folder adds jobs, never reuses one."""
    numbers = [int(p.name) for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(numbers, default=-1) + 1


def best_finished(study: optuna.Study) -> float | None:
    """The best objective of a trial that reached the target (any process's), or None."""
    values = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return min(finite) if finite else None


def update_budget(study: optuna.Study, sweep_dir: Path, prune_factor: float | None) -> None:
    best = best_finished(study)
    write_budget(sweep_dir, best * prune_factor if best is not None and prune_factor else None)


def tell(study: optuna.Study, trial: optuna.Trial, seeds: list[int], outcome: TrialOutcome) -> bool:
    """Tell the trial its outcome; True when the sampler says the search space is exhausted."""
    for key, value in (("status", outcome.status), ("seeds", seeds), ("seconds", outcome.seconds)):
        trial.set_user_attr(key, value)
    trial.set_user_attr("jobs", outcome.jobs)
    if outcome.status == "pruned":
        trial.report(outcome.train_seconds, step=0)
    shown = f"{outcome.value:.4g} s" if math.isfinite(outcome.value) else outcome.status
    log.info("trial %d: %s -> %s (%s)", trial.number, trial.params, shown, outcome.status)
    try:
        if outcome.status == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, outcome.value)
    except RuntimeError as err:
        # an exhaustive sampler (BruteForceSampler) calls Study.stop once every point was tried, which Optuna
        # refuses outside study.optimize; the trial is stored by then (Optuna stores it in a `finally`)
        if "Study.stop" not in str(err):
            raise
        log.info("the sampler has tried every point of the search space: the study stops")
        return True
    return False


JobLauncher = Callable[[Sequence[Sequence[str]], int], list[Path]]


def run_trials(
    study: optuna.Study,
    space: SearchSpace,
    launch: JobLauncher,
    sweep_dir: Path,
    settings: SearchSettings,
    after_batch: Callable[[optuna.Study], None] | None = None,
) -> None:
    """Ask `n_jobs` trials at a time, launch every trial's seeds together, tell each trial its outcome;
    `after_batch(study)` after each batch (the study record), also when a batch ends in an error or Ctrl-C.

    `launch(overrides, first_job_index)` runs the jobs and returns their folders in order.
    """
    job_index = next_job_index(sweep_dir)
    per_trial = len(space.seeds)
    done = 0
    trials: list[optuna.Trial] = []  # the batch being run; `told` of them told their outcome
    folders: list[Path] = []
    told, launched = 0, False
    try:  # from the first ask to the last record: no trial is left "running" forever, study.json is written
        update_budget(study, sweep_dir, settings.prune_factor)
        while done < settings.n_trials:
            trials, told, launched, exhausted = [], 0, False, False
            for _ in range(min(settings.n_jobs, settings.n_trials - done)):
                trials.append(study.ask())
            # Hydra's folders of the jobs (hydra.sweep.subdir = job number) until the launcher returns its own
            folders = [sweep_dir.absolute() / str(job_index + i) for i in range(len(trials) * per_trial)]
            batch = [job for trial in trials for job in space.job_overrides(space.suggest(trial))]
            launched = True
            folders = launch(batch, job_index)
            job_index += len(batch)
            for i, trial in enumerate(trials):
                outcome = trial_outcome(folders[i * per_trial : (i + 1) * per_trial])
                exhausted = tell(study, trial, space.seeds, outcome) or exhausted
                told += 1
            update_budget(study, sweep_dir, settings.prune_factor)
            done += len(trials)
            if after_batch is not None:
                after_batch(study)
            if exhausted:
                return
    except BaseException as err:  # a broken launch, a crash here, or Ctrl-C (also between two batches)
        for i, trial in enumerate(trials[told:], start=told):
            jobs = folders[i * per_trial : (i + 1) * per_trial] if launched else []
            tell_stopped(study, trial, space.seeds, [j for j in jobs if j.exists()], err)
        if after_batch is not None:
            _record_anyway(after_batch, study)
        raise


def _interrupted(err: BaseException) -> bool:
    """Ctrl-C: in the sweeper itself, or in a job, which ends with exit code 130 (trainspeed.train)."""
    return isinstance(err, KeyboardInterrupt) or (isinstance(err, SystemExit) and err.code == 130)


def tell_stopped(
    study: optuna.Study, trial: optuna.Trial, seeds: list[int], jobs: list[Path], err: BaseException
) -> None:
    """Tell a trial whose batch did not finish as failed, its job folders linked (those that were started)."""
    status = "interrupted" if _interrupted(err) else "failed"
    try:
        trial.set_user_attr("status", status)
        trial.set_user_attr("seeds", seeds)
        trial.set_user_attr("jobs", [str(j) for j in jobs])
        if status == "failed":
            trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:500])
        study.tell(trial, state=TrialState.FAIL)
    except Exception as tell_err:  # the storage itself may be what broke: the original error matters more
        log.warning("trial %d could not be marked failed: %s", trial.number, tell_err)


def _record_anyway(after_batch: Callable[[optuna.Study], None], study: optuna.Study) -> None:
    try:
        after_batch(study)
    except Exception as err:
        log.warning("the study record was not written: %s", err)
