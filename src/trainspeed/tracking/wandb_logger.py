"""One W&B run per job: offline unless an account is configured, named and filed by the job, finished with the
job's outcome, and never a reason for training to stop (an unreachable server means an offline run)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from trainspeed.record.summary import Summary
from trainspeed.tracking.mode import has_credentials, resolve_mode
from trainspeed.tracking.naming import (
    config_beside_sweep,
    job_overrides,
    resolved_config,
    run_name,
    run_tags,
    sweep_group,
    swept_keys,
)
from trainspeed.tracking.redact import scrub

log = logging.getLogger("trainspeed")
_unreachable: str | None = None  # why the W&B server could not be reached, once it could not


def summary_fields(summary: Summary) -> dict[str, Any]:
    """summary.json's outcome as flat W&B summary keys: status, reached_target, time_to_target/*, final and best
    metrics, time and step counts, the data's and weights' fingerprints (inputs/*, to group runs by the data they
    read), and `stopped_by` / `budget_seconds` for a run the search's budget stopped."""
    fields: dict[str, Any] = {"status": summary.status, "reached_target": summary.reached_target}
    fields.update({f"time_to_target/{k}": v for k, v in summary.time_to_target.model_dump().items()})
    fields.update(summary.metrics)
    fields.update(
        train_seconds=summary.train_seconds,
        wall_seconds=summary.wall_seconds,
        steps=summary.steps,
        epochs=summary.epochs,
        error=summary.error,
    )
    fields.update({f"inputs/{k}": v for k, v in summary.inputs.model_dump().items()})
    if summary.compile_seconds is not None:
        fields["compile_seconds"] = summary.compile_seconds
    if (
        summary.stopped_by is not None
    ):  # pruned by a search's budget: not a run that could not reach the target
        fields.update(stopped_by=summary.stopped_by, budget_seconds=summary.budget_seconds)
    return fields


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


class WandbRunLogger(WandbLogger):
    """Lightning's WandbLogger with trainspeed's run conventions (conf/logger/wandb.yaml).

    Differences from the stock logger: the mode is resolved per run (no global WANDB_MODE change that would leak
    into the next job of a sweep); a new run is always started, never an unfinished one reused; the online attempt
    is bounded by `init_timeout` and falls back to an offline run with one warning; name, group, tags and config
    come from the job (`describe_job`); the run is finished by `finish_run` with the job's outcome.
    """

    def __init__(
        self,
        save_dir: str,
        project: str = "trainspeed",
        entity: str | None = None,
        mode: str | None = None,
        init_timeout: float = 30.0,
        name: str | None = None,
        group: str | None = None,
        tags: Iterable[str] = (),
        job_type: str = "train",
        log_model: bool | str = False,
        watch: str | None = None,
        watch_log_freq: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            name=name,
            save_dir=save_dir,
            project=project,
            log_model=log_model,
            entity=entity,
            group=group,
            job_type=job_type,
            tags=list(tags or []),
            **kwargs,
        )
        self._wandb_init.pop("anonymous", None)  # deprecated in wandb, which warns whenever it is passed
        self._mode = mode
        self._init_timeout = float(init_timeout)
        self._run_config: dict[str, Any] = {}
        self.fell_back: str | None = None  # why the run went offline when online was asked for
        self._watch, self._watch_log_freq = watch, int(watch_log_freq)
        self._watched = False

    def describe_job(self, cfg: DictConfig) -> None:
        """Name, group, tags and config for the run, from the job's config and Hydra (before the run starts)."""
        init = self._wandb_init
        init["name"] = init.get("name") or run_name(job_overrides(), swept_keys())
        init["group"] = init.get("group") or sweep_group()
        init["tags"] = run_tags(cfg, init.get("tags"))
        self._wandb_init = scrub(init)  # notes, name, tags... may interpolate the environment
        self._run_config = scrub(resolved_config(cfg))

    def continue_previous_run(self) -> str | None:
        """For a resumed job: continue the W&B run an earlier attempt started online in this folder (same id,
        resume="allow"). Offline attempts each keep their own run folder, which `wandb sync` uploads separately."""
        online = sorted(Path(self.save_dir, "wandb").glob("run-*-*"), key=lambda p: p.name)
        if not online:
            return None
        run_id = online[-1].name.rsplit("-", 1)[1]
        self._wandb_init.update(id=run_id, resume="allow")
        return run_id

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is None:
            self._experiment = self._start_run()
        return self._experiment

    def _start_run(self) -> Any:
        import wandb

        mode = resolve_mode(self._mode)
        init = {**self._wandb_init, "reinit": "finish_previous"}
        settings = wandb.Settings(init_timeout=self._init_timeout, quiet=True)
        run = None
        if mode == "online":
            run = self._try_online(wandb, init, settings)
            if run is None:
                log.warning(
                    "W&B online mode unavailable (%s): logging this run offline instead", self.fell_back
                )
                mode = "offline"
        if run is None:
            run = wandb.init(**init, mode=mode, settings=settings)
        run.define_metric("trainer/global_step")
        run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
        # a W&B Sweep sets (and locks) its parameters before this: add the rest of the config beside them
        run.config.update(config_beside_sweep(self._run_config, dict(run.config)))
        return run

    def _try_online(self, wandb: Any, init: dict[str, Any], settings: Any) -> Any:
        """An online run, or None with the reason in `fell_back`. Once the server was unreachable, later jobs of
        this process (a sweep) go offline at once instead of each waiting `init_timeout` again."""
        global _unreachable
        self.fell_back = None if has_credentials() else "no API key: WANDB_API_KEY or `wandb login`"
        if self.fell_back is None and _unreachable is not None:
            self.fell_back = f"unreachable earlier in this process: {_unreachable}"
        if self.fell_back is not None:
            return None
        try:
            return wandb.init(**init, mode="online", settings=settings)
        except Exception as err:  # noqa: BLE001 - whatever stops W&B, the training must go on
            self.fell_back = _unreachable = _first_line(err)
            return None

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        """Ignored: the run's config is already the whole resolved job config (`describe_job`), which module or
        datamodule hyperparameters would only repeat under other names."""

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """`watch` (gradients | parameters | all): W&B's histograms of the model's gradients and/or parameters
        every `watch_log_freq` steps. Lightning hands every logger the module here when fit starts, which is the
        one place a logger sees it; the module is watched once (test and later fits reuse the hooks)."""
        if self._watch is None or self._watched:
            return
        self._watched = True
        # W&B logs parameters from a forward hook on the watched module, and a LightningModule's training step
        # calls its network, never itself: watch the one child that holds the parameters (charts then read
        # gradients/body.1.weight, the layer names of the diagnostics)
        holders = [child for child in model.children() if next(child.parameters(), None) is not None]
        target = holders[0] if len(holders) == 1 else model
        # Lightning's WandbLogger.watch, with idx=0: W&B numbers the models watched in one process, and would
        # name the charts of a sweep's second job graph_1/..., unlike the first job's
        self.experiment.watch(target, log=self._watch, log_freq=self._watch_log_freq, log_graph=False, idx=0)

    @rank_zero_only
    def finish_run(self, summary: Summary) -> None:
        """Write the job's outcome into the run's summary and finish it: exit code 1 when the job failed, so the
        dashboard shows it failed. Then say where the run is and how to view and upload it."""
        run = self._experiment
        if run is None:
            return
        self._experiment = None  # a later access starts a new run rather than writing into a finished one
        run.summary.update(scrub(summary_fields(summary)))
        offline = run.settings.mode == "offline"
        sync_dir = Path(run.settings.sync_dir)
        url = None if offline else run.url
        run.finish(exit_code=1 if summary.status == "failed" else 0)
        if url:
            log.info("W&B run: %s", url)
        elif offline:
            log.info(
                "W&B run saved offline: view it with `wandb leet %s`, upload it with `wandb sync %s`",
                sync_dir.parent,
                sync_dir,
            )


def start_wandb_runs(loggers: Iterable[Logger], cfg: DictConfig, resuming: bool = False) -> None:
    """Describe and start the W&B run of every WandbRunLogger now, so that a job failing early still has one.
    A resumed job continues its earlier online run."""
    for logger in loggers:
        if isinstance(logger, WandbRunLogger):
            logger.describe_job(cfg)
            if resuming:
                logger.continue_previous_run()
            _ = logger.experiment  # only rank zero starts a run (the others get Lightning's dummy)


def finish_wandb_runs(loggers: Iterable[Logger], summary: Summary) -> None:
    """Finish the W&B runs with the job's summary; a tracking problem is reported, never raised over the job's."""
    for logger in loggers:
        if isinstance(logger, WandbRunLogger):
            try:
                logger.finish_run(summary)
            except Exception as err:  # noqa: BLE001 - the run record on disk is what must not be lost
                log.warning("W&B run could not be finished: %s", _first_line(err))
