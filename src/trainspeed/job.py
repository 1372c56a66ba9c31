"""One training job, start to finish: validate, build, fit, test, and write the run record."""

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
from trainspeed.model import build_network
from trainspeed.record.summary import build_summary, final_metrics, write_summary
from trainspeed.training.classifier import Classifier
from trainspeed.training.trainer_factory import build_trainer

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


def run_job(cfg: DictConfig) -> dict[str, Any]:
    """Train the configured network and return the summary written to summary.json."""
    started = time.perf_counter()
    run_dir, overrides = run_dir_and_overrides()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg.data, cfg.seed)
    network = _prepare_network(cfg, build_network(cfg, datamodule.input_shape, datamodule.num_classes))
    module = Classifier(
        network, cfg.optimizer, cfg.scheduler, datamodule.num_classes, cfg.trainer.log_every_n_steps
    )
    parts = build_trainer(cfg)
    trainer = parts.trainer
    trainer.fit(module, datamodule=datamodule)
    fit_metrics = dict(trainer.callback_metrics)
    if cfg.run_test and not trainer.interrupted:
        trainer.test(module, datamodule=datamodule, verbose=False)
    metrics = final_metrics({**fit_metrics, **trainer.callback_metrics}, parts.time_to_target.best, cfg.target.metric)
    summary = build_summary(
        status="completed",
        time_to_target=parts.time_to_target.result,
        target={"metric": cfg.target.metric, "value": float(cfg.target.value)},
        metrics=metrics,
        train_seconds=parts.clock.seconds,
        wall_seconds=time.perf_counter() - started,
        steps=int(trainer.global_step),
        epochs=int(trainer.current_epoch),
        seed=int(cfg.seed),
        overrides=overrides,
        device=str(trainer.strategy.root_device),
    )
    if trainer.is_global_zero:
        write_summary(run_dir, summary)
    return summary
