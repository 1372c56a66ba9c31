"""Hydra registers sweepers only from the `hydra_plugins` package: this class is trainspeed's Optuna sweeper there
(selected by conf/hydra/sweeper/optuna.yaml); the search itself lives in trainspeed.search."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("trainspeed")


class TrainspeedOptunaSweeper(Sweeper):
    """Runs `n_trials` Optuna trials, each one job per seed, through the configured Hydra launcher."""

    def __init__(
        self,
        study_name: str,
        storage: str | None,
        n_trials: int,
        n_jobs: int,
        seeds: Sequence[int],
        sampler: DictConfig,
        prune_factor: float | None,
        params: DictConfig | None,
        enqueue: Sequence[DictConfig] | None = None,
    ) -> None:
        self.study_name, self.storage = study_name, storage
        self.n_trials, self.n_jobs, self.seeds = int(n_trials), max(1, int(n_jobs)), list(seeds)
        self.sampler = OmegaConf.to_container(sampler, resolve=True) if sampler is not None else {}
        self.prune_factor = float(prune_factor) if prune_factor else None
        self.params = OmegaConf.to_container(params, resolve=True) if params is not None else {}
        self.enqueue = [OmegaConf.to_container(e, resolve=True) for e in (enqueue or [])]
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.returns: list[Sequence[JobReturn]] = []

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _launch(self, batch: Sequence[Sequence[str]], first_index: int) -> list[Path]:
        self.validate_batch_is_legal(batch)
        returns = self.launcher.launch(batch, initial_job_idx=first_index)
        self.returns.append(returns)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        folders = []
        for i, ret in enumerate(returns):
            output_dir = (
                OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") if ret.hydra_cfg else None
            )
            folders.append(Path(output_dir) if output_dir else sweep_dir / str(first_index + i))
        return folders

    def sweep(self, arguments: list[str]) -> Any:
        import optuna

        from trainspeed.report.study import write_study_record
        from trainspeed.search.space import parse_space
        from trainspeed.search.study import make_sampler, open_storage, run_trials

        assert self.config is not None and self.hydra_context is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        space = parse_space(parser, self.params, arguments)
        if not any(a.split("=", 1)[0] == "seed" for a in arguments) and "seed" not in self.params:
            space.seeds = self.seeds
        sampler = make_sampler(
            str(self.sampler.get("name", "TPESampler")),
            self.sampler.get("seed"),
            self.sampler.get("kwargs") or {},
        )
        study = optuna.create_study(
            study_name=self.study_name,
            storage=open_storage(self.storage, sweep_dir),
            sampler=sampler,
            direction="minimize",
            load_if_exists=True,  # a relaunch, or another process on the same storage, continues the study
        )
        log.info(
            "Optuna study %r: %d trial(s) so far, adding %d (%d seed(s) each)",
            self.study_name,
            len(study.trials),
            self.n_trials,
            len(space.seeds),
        )
        for params in self.enqueue:
            study.enqueue_trial(params, skip_if_exists=True)
        record = lambda s: write_study_record(s, sweep_dir)  # noqa: E731  (the report reads it, also mid-sweep)
        run_trials(
            study, space, self._launch, sweep_dir, self.n_trials, self.n_jobs, self.prune_factor, record
        )
        return self.returns
