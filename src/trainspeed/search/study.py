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
from typing import Any

import optuna
from optuna.trial import TrialState

from trainspeed.errors import ConfigError
from trainspeed.search.budget import write_budget
from trainspeed.search.outcome import TrialOutcome, trial_outcome
from trainspeed.search.space import SearchSpace

log = logging.getLogger("trainspeed")

DB_FILE = "optuna.db"
JOURNAL = "journal:"


def open_storage(url: str | None, sweep_dir: Path) -> optuna.storages.BaseStorage:
    """An SQLite file in the sweep folder by default; any Optuna RDB URL; `journal:<file>` for Optuna's journal
    file (the storage Optuna recommends for several processes writing one study without a database server)."""
    if not url:
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


def make_sampler(name: str, seed: int | None, kwargs: dict[str, Any]) -> optuna.samplers.BaseSampler:
    """Any sampler of optuna.samplers by class name (TPESampler, RandomSampler, CmaEsSampler, QMCSampler, ...)."""
    names = sorted(n for n in dir(optuna.samplers) if n.endswith("Sampler") and n != "BaseSampler")
    if name not in names:
        raise ConfigError("hydra.sweeper.sampler.name", name, ", ".join(names))
    sampler_class = getattr(optuna.samplers, name)
    return sampler_class(**({"seed": seed} if seed is not None else {}), **kwargs)


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


def tell(study: optuna.Study, trial: optuna.Trial, seeds: list[int], outcome: TrialOutcome) -> None:
    for key, value in (("status", outcome.status), ("seeds", seeds), ("seconds", outcome.seconds)):
        trial.set_user_attr(key, value)
    trial.set_user_attr("jobs", outcome.jobs)
    if outcome.status == "pruned":
        trial.report(outcome.train_seconds, step=0)
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, outcome.value)
    shown = f"{outcome.value:.4g} s" if math.isfinite(outcome.value) else outcome.status
    log.info("trial %d: %s -> %s (%s)", trial.number, trial.params, shown, outcome.status)


JobLauncher = Callable[[Sequence[Sequence[str]], int], list[Path]]


def run_trials(
    study: optuna.Study,
    space: SearchSpace,
    launch: JobLauncher,
    sweep_dir: Path,
    n_trials: int,
    n_jobs: int,
    prune_factor: float | None,
    after_batch: Callable[[optuna.Study], None] | None = None,
) -> None:
    """Ask `n_jobs` trials at a time, launch every trial's seeds together, tell each trial its outcome.

    `launch(overrides, first_job_index)` runs the jobs and returns their folders in order.
    """
    job_index = next_job_index(sweep_dir)
    update_budget(study, sweep_dir, prune_factor)
    done = 0
    while done < n_trials:
        trials = [study.ask() for _ in range(min(n_jobs, n_trials - done))]
        params = [space.suggest(trial) for trial in trials]
        batch = [job for p in params for job in space.job_overrides(p)]
        try:
            folders = launch(batch, job_index)
        except BaseException:  # a broken launch or Ctrl-C: no trial left "running" forever
            for trial in trials:
                study.tell(trial, state=TrialState.FAIL)
            raise
        job_index += len(batch)
        per_trial = len(space.seeds)
        for i, trial in enumerate(trials):
            outcome = trial_outcome(folders[i * per_trial : (i + 1) * per_trial])
            tell(study, trial, space.seeds, outcome)
        update_budget(study, sweep_dir, prune_factor)
        done += len(trials)
        if after_batch is not None:
            after_batch(study)
