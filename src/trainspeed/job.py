"""One training job, start to finish: build, fit, test, and write the run record (also when it fails)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from trainspeed.data import build_datamodule
from trainspeed.errors import out_of_memory
from trainspeed.model import build_network
from trainspeed.record.summary import build_summary, final_metrics, write_summary
from trainspeed.resume import checkpoint_step, checkpoint_to_resume
from trainspeed.tracking.redact import scrub
from trainspeed.tracking.wandb_logger import finish_wandb_runs, start_wandb_runs
from trainspeed.training.classifier import Classifier
from trainspeed.training.finetune import plan_finetune
from trainspeed.training.trainer_factory import STEP_KEYS, TrainerParts, build_trainer

log = logging.getLogger(__name__)


def run_dir_and_overrides() -> tuple[Path, list[str]]:
    """The job's output folder and its command-line overrides (from Hydra, or the cwd outside Hydra)."""
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        return Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task)
    return Path.cwd(), []


def _prepare_network(cfg: DictConfig, network: torch.nn.Module) -> torch.nn.Module:
    """Speed switches from the trainer group: channels_last memory format and torch.compile."""
    if cfg.trainer.get("channels_last"):
        network = network.to(memory_format=torch.channels_last)
    if cfg.trainer.get("compile"):
        network = torch.compile(network)
    return network


class JobRecorder:
    """Collects what the run record needs as the job proceeds and writes summary.json once, at the end."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.started = time.perf_counter()
        self.run_dir, self.overrides = run_dir_and_overrides()
        self.parts: TrainerParts | None = None
        self.test_metrics: dict[str, Any] = {}

    def summary(self, status: str, error: str | None = None) -> dict[str, Any]:
        cfg, parts = self.cfg, self.parts
        trainer = parts.trainer if parts else None
        callback_metrics = {**(dict(trainer.callback_metrics) if trainer else {}), **self.test_metrics}
        best = parts.time_to_target.best if parts else None
        return build_summary(
            status=status,
            time_to_target=parts.time_to_target.result if parts else None,
            target={"metric": cfg.target.metric, "value": float(cfg.target.value)},
            metrics=final_metrics(callback_metrics, best, cfg.target.metric),
            train_seconds=parts.clock.seconds if parts else 0.0,
            wall_seconds=time.perf_counter() - self.started,
            steps=int(trainer.global_step) if trainer else 0,
            epochs=int(trainer.current_epoch) if trainer else 0,
            seed=int(cfg.seed),
            overrides=self.overrides,
            device=str(trainer.strategy.root_device) if trainer else "none",
            error=error,
            extra=self._compile_record(),
        )

    def _compile_record(self) -> dict[str, Any] | None:
        """compile_seconds: torch.compile's time, kept out of train_seconds unless trainer.charge_compile."""
        if self.parts is None or not self.cfg.trainer.get("compile"):
            return None
        return {"compile_seconds": round(self.parts.clock.compile_seconds, 4)}

    @property
    def interrupted(self) -> bool:
        """Whether Lightning stopped fit/test on Ctrl-C (it then exits with SystemExit(1), not KeyboardInterrupt)."""
        return self.parts is not None and self.parts.trainer.interrupted

    def save_last_checkpoint(self) -> None:
        """checkpoints/last.ckpt with the state at the interruption (mid-epoch too), so the run can resume."""
        trainer = self.parts.trainer if self.parts else None
        if trainer is None or trainer.lightning_module is None:
            return
        folder = getattr(trainer.checkpoint_callback, "dirpath", None) or self.run_dir / "checkpoints"
        try:
            trainer.save_checkpoint(Path(folder) / "last.ckpt")
        except Exception as err:  # the record matters more than the checkpoint: write it anyway
            log.warning("the last checkpoint could not be saved: %s", err)

    def write(self, summary: dict[str, Any]) -> None:
        trainer = self.parts.trainer if self.parts else None
        if trainer is None or trainer.is_global_zero:
            write_summary(self.run_dir, scrub(summary))  # no credential from the environment in the record
        if trainer is not None:
            finish_wandb_runs(trainer.loggers, summary)  # the W&B run ends with the job's outcome


def run_job(cfg: DictConfig, resume_from: str | None = None) -> dict[str, Any]:
    """Train the configured network and return the summary written to summary.json.

    `resume_from` (or `resume=RUN_DIR` / `ckpt_path=` in the config) continues from a checkpoint: model,
    optimizer, schedulers, loop progress, the training clock, RNG states and the data order are restored.

    On any error the record is still written, with status "failed" and the error message, before the error
    propagates: a failed job never leaves a folder that looks unfinished or completed.
    """
    recorder = JobRecorder(cfg)
    try:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = build_datamodule(cfg.data, cfg.seed)
        network = _prepare_network(cfg, build_network(cfg, datamodule.input_shape, datamodule.num_classes))
        plan = plan_finetune(cfg.get("finetune"), network)  # freezes the backbone where the strategy says so
        module = Classifier(
            network,
            cfg.optimizer,
            cfg.scheduler,
            datamodule.num_classes,
            cfg.trainer.log_every_n_steps,
            plan,
            **{key: cfg.trainer.get(key) for key in STEP_KEYS if cfg.trainer.get(key) is not None},
        )
        checkpoint = resume_from or checkpoint_to_resume(
            recorder.run_dir, cfg.get("resume"), cfg.get("ckpt_path")
        )
        recorder.parts = build_trainer(cfg, resume_step=checkpoint_step(checkpoint))
        trainer = recorder.parts.trainer
        # started now, so that a job failing in fit has its failed W&B run; a resumed job continues its run
        start_wandb_runs(trainer.loggers, cfg, resuming=checkpoint is not None)
        trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint)
        if trainer.interrupted:
            raise KeyboardInterrupt
        if cfg.run_test:
            fit_metrics = dict(trainer.callback_metrics)
            trainer.test(module, datamodule=datamodule, verbose=False)
            recorder.test_metrics = {**fit_metrics, **trainer.callback_metrics}
        guard = recorder.parts.divergence
        summary = recorder.summary("diverged" if guard.diverged else "completed", error=guard.reason)
    except BaseException as err:
        # Lightning turns Ctrl-C in fit/test into a graceful stop ending in SystemExit(1): still an interrupt
        interrupted = isinstance(err, KeyboardInterrupt) or (
            isinstance(err, SystemExit) and recorder.interrupted
        )
        oom = None if interrupted else out_of_memory(err, cfg.data.batch_size, cfg.trainer.precision)
        message = "interrupted" if interrupted else f"{type(err).__name__}: {oom or err}"
        if interrupted:
            recorder.save_last_checkpoint()
        recorder.write(recorder.summary("failed", error=message))
        if interrupted:
            raise KeyboardInterrupt(message) from None
        if oom is not None:
            raise oom from err
        raise
    recorder.write(summary)
    return summary
