"""Hydra registers sweepers only from the `hydra_plugins` package: this class is trainspeed's Optuna sweeper there
(selected by conf/hydra/sweeper/optuna.yaml); the search itself lives in trainspeed.search."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from trainspeed.errors import TrainspeedError

log = logging.getLogger("trainspeed")


class TrainspeedOptunaSweeper(Sweeper):
    """Runs `n_trials` Optuna trials, each one job per seed, through the configured Hydra launcher."""

    def __init__(self, **settings: Any) -> None:
        # kept as given: trainspeed.search.settings checks them in sweep(), where a refusal can be one line
        self.settings = settings
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
        """The search; a bad setting ends it with one line naming it and exit code 2, before any trial."""
        try:
            return self._sweep(arguments)
        except TrainspeedError as err:
            if os.environ.get("HYDRA_FULL_ERROR"):
                raise
            print(f"trainspeed: error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    def _sweep(self, arguments: list[str]) -> Any:
        from trainspeed.report.study import write_study_record
        from trainspeed.search.sampler import check_sampler_space
        from trainspeed.search.settings import search_settings
        from trainspeed.search.space import check_choices_hold_keys, check_enqueued, parse_space
        from trainspeed.search.study import (
            check_same_space,
            fail_stale_trials,
            open_study,
            run_trials,
            space_exhausted,
        )

        assert self.config is not None and self.hydra_context is not None
        settings = search_settings(OmegaConf.to_container(OmegaConf.create(self.settings), resolve=True))
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        space = parse_space(parser, settings.params, arguments, default_seeds=settings.seeds)
        check_enqueued(settings.enqueue, space)
        loader = self.hydra_context.config_loader
        check_choices_hold_keys(space, lambda overrides: loader.load_sweep_config(self.config, overrides))
        check_sampler_space(settings.sampler_name, space.distributions)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        study = open_study(settings, sweep_dir)
        check_same_space(study, space)  # before anything is written
        if not settings.storage:
            fail_stale_trials(study)
        if settings.sampler_name == "BruteForceSampler" and space_exhausted(study, space):
            log.info("the sampler has tried every point of the search space already: no trial to add")
            return self.returns
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        log.info(
            "Optuna study %r: %d trial(s) so far, adding %d (%d seed(s) each)",
            settings.study_name,
            len(study.trials),
            settings.n_trials,
            len(space.seeds),
        )
        for trial_params in settings.enqueue:
            study.enqueue_trial(trial_params, skip_if_exists=True)
        record = lambda s: write_study_record(s, sweep_dir)  # noqa: E731  (the report reads it, also mid-sweep)
        run_trials(study, space, self._launch, sweep_dir, settings, record)
        return self.returns
