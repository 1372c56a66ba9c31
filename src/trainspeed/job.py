"""One training job, start to finish: build, fit, test, and write the run record (also when it fails)."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from trainspeed.callbacks.stepped_loop import find_stepped_loop
from trainspeed.data import build_datamodule
from trainspeed.errors import ConfigError, out_of_memory
from trainspeed.model import build_network
from trainspeed.record.inputs import file_fingerprint
from trainspeed.record.run_folder import is_placement, last_logged
from trainspeed.record.summary import Summary, build_summary, final_metrics, write_summary
from trainspeed.resume import (
    CheckpointState,
    check_checkpoint_fits,
    check_same_inputs,
    checkpoint_state,
    checkpoint_to_resume,
)
from trainspeed.run_mode import resolve_run_mode, stop_reason
from trainspeed.search.budget import read_stop
from trainspeed.tracking.redact import scrub
from trainspeed.tracking.wandb_logger import finish_wandb_runs, start_wandb_runs
from trainspeed.training.classifier import Classifier
from trainspeed.training.finetune import plan_finetune
from trainspeed.training.trainer_factory import STEP_KEYS, TrainerParts, build_trainer

log = logging.getLogger(__name__)

# the final metrics a run logs while it trains (val/acc_best is the time-to-target callback's, restored with it)
LOGGED_METRICS = ("val/acc", "val/loss", "train/loss")


def run_dir_and_overrides() -> tuple[Path, list[str]]:
    """The job's output folder and the overrides that decide what it trains (from Hydra, or the cwd outside
    Hydra); resume= and run_mode= only say how it was launched (the record keeps the mode as run_mode)."""
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        return Path(hydra_cfg.runtime.output_dir), [
            o for o in hydra_cfg.overrides.task if not is_placement(o)
        ]
    return Path.cwd(), []


def _prepare_network(cfg: DictConfig, network: torch.nn.Module) -> torch.nn.Module:
    """Speed switches from the trainer group: channels_last memory format and torch.compile."""
    if cfg.trainer.get("channels_last"):
        network = network.to(memory_format=torch.channels_last)
    if cfg.trainer.get("compile"):
        network = torch.compile(network)
    return network


def completed_epochs(trainer: pl.Trainer) -> int:
    """Whole epochs trained (Lightning's current_epoch also counts the epoch a run stopped in)."""
    stepped = find_stepped_loop(trainer)
    length = stepped.epoch_length(trainer) if stepped is not None else trainer.num_training_batches
    if length and math.isfinite(length):
        return int(trainer.global_step // int(length))
    return int(trainer.current_epoch)


class JobRecorder:
    """Collects what the run record needs as the job proceeds and writes summary.json once, at the end."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.started = time.perf_counter()
        self.run_dir, self.overrides = run_dir_and_overrides()
        self.parts: TrainerParts | None = None
        self.test_metrics: dict[str, Any] = {}
        # a run whose record is finished from a checkpoint at its stop condition: what it last logged, and where
        self.restored_metrics: dict[str, float] = {}
        self.finished_at: CheckpointState | None = None
        self.inputs: dict[str, str | None] | None = None  # fingerprints of the data and weights read

    def summary(self, status: str, error: str | None = None) -> Summary:
        cfg, parts = self.cfg, self.parts
        trainer = parts.trainer if parts else None
        callback_metrics = {
            **self.restored_metrics,
            **(dict(trainer.callback_metrics) if trainer else {}),
            **self.test_metrics,
        }
        best = parts.time_to_target.best if parts else None
        stop = read_stop(self.run_dir)  # written by the search budget's callback when it stopped the run
        return build_summary(
            status=status,
            time_to_target=parts.time_to_target.result if parts else None,
            target={"metric": cfg.target.metric, "value": float(cfg.target.value)},
            metrics=final_metrics(callback_metrics, best, cfg.target.metric),
            train_seconds=parts.clock.seconds if parts else 0.0,
            wall_seconds=time.perf_counter() - self.started,
            steps=self.finished_at.step if self.finished_at else int(trainer.global_step) if trainer else 0,
            epochs=self.finished_at.epoch
            if self.finished_at
            else completed_epochs(trainer)
            if trainer
            else 0,
            seed=int(cfg.seed),
            overrides=self.overrides,
            device=str(trainer.strategy.root_device) if trainer else "none",
            run_mode=cfg.get("run_mode"),
            resolution_steps=parts.time_to_target.resolution_steps if parts else None,
            error=error,
            compile_seconds=self._compile_seconds(),
            budget_seconds=stop.get("budget") if stop else None,
            inputs=self.inputs,
        )

    def _compile_seconds(self) -> float | None:
        """torch.compile's time, kept out of train_seconds unless trainer.charge_compile (null: not compiled)."""
        if self.parts is None or not self.cfg.trainer.get("compile"):
            return None
        return self.parts.clock.compile_seconds

    @property
    def interrupted(self) -> bool:
        """Whether Lightning stopped fit/test on Ctrl-C (it then exits with SystemExit(1), not KeyboardInterrupt)."""
        return self.parts is not None and self.parts.trainer.interrupted

    def save_last_checkpoint(self) -> None:
        """checkpoints/last.ckpt with the state now (an interruption, mid-epoch too, or the end of training), so the
        run can resume or have its record finished from it."""
        trainer = self.parts.trainer if self.parts else None
        if trainer is None or trainer.lightning_module is None:
            return
        folder = getattr(trainer.checkpoint_callback, "dirpath", None) or self.run_dir / "checkpoints"
        try:
            trainer.save_checkpoint(Path(folder) / "last.ckpt")
        except Exception as err:  # the record matters more than the checkpoint: write it anyway
            log.warning("the last checkpoint could not be saved: %s", err)

    def write(self, summary: Summary) -> None:
        trainer = self.parts.trainer if self.parts else None
        if trainer is None or trainer.is_global_zero:
            # no credential from the environment in the record
            write_summary(self.run_dir, Summary.model_validate(scrub(summary.model_dump())))
        if trainer is not None:
            finish_wandb_runs(trainer.loggers, summary)  # the W&B run ends with the job's outcome


def _restore_progress(trainer: pl.Trainer, checkpoint: str) -> None:
    """The callbacks' checkpointed state (training clock, time to target, ...) and the fit loop's progress (the
    step the test metrics are logged at), without resuming fit."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    callbacks = state.get("callbacks") or {}
    for callback in trainer.callbacks:
        if callback.state_key in callbacks:
            callback.load_state_dict(callbacks[callback.state_key])
    if "fit_loop" in (state.get("loops") or {}):
        trainer.fit_loop.load_state_dict(state["loops"]["fit_loop"])


def _logged_before(run_dir: Path, state: CheckpointState, ended: bool) -> dict[str, float]:
    """The metrics a run had logged when its checkpoint was written: saved in the checkpoint, or for a checkpoint
    written without them, metrics.csv's last values before it (every row, when training is over)."""
    if state.logged is not None:
        return {name: state.logged[name] for name in LOGGED_METRICS if name in state.logged}
    return last_logged(run_dir, LOGGED_METRICS, state.step if ended else state.step - 1)


def _finish_from_checkpoint(
    recorder: JobRecorder, module: Classifier, datamodule: Any, checkpoint: str, state: CheckpointState
) -> None:
    """Complete the record of a run whose checkpoint is already where it would stop (a job killed after training,
    before its record was written): no training step; the final metrics are those the run logged last."""
    trainer = recorder.parts.trainer
    _restore_progress(trainer, checkpoint)
    recorder.finished_at = state
    recorder.restored_metrics = _logged_before(recorder.run_dir, state, ended=True)
    if recorder.cfg.run_test:
        trainer.test(module, datamodule=datamodule, ckpt_path=checkpoint, verbose=False)
        recorder.test_metrics = dict(trainer.callback_metrics)


def _checkpoint_setting(cfg: DictConfig, checkpoint: str | None) -> tuple[str, str]:
    """The setting that chose the checkpoint a run starts from, and its value, for messages about it."""
    if cfg.get("ckpt_path"):
        return "ckpt_path", str(cfg.ckpt_path)
    if cfg.get("resume"):
        return "resume", str(cfg.resume)
    return "checkpoint", str(checkpoint)  # a sweep job's own, on a re-launch


def run_job(cfg: DictConfig, resume_from: str | None = None) -> Summary:
    """Train the configured network and return the summary written to summary.json.

    `resume_from` (or `resume=RUN_DIR` / `ckpt_path=` in the config) continues from a checkpoint: model,
    optimizer, schedulers, loop progress, the training clock, RNG states and the data order are restored.

    On any error the record is still written, with status "failed" and the error message, before the error
    propagates: a failed job never leaves a folder that looks unfinished or completed.
    """
    resolve_run_mode(cfg)  # done by train.main already; here for callers that build a config themselves
    recorder = JobRecorder(cfg)
    try:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = build_datamodule(cfg.data, cfg.seed)
        network, weights = build_network(cfg, datamodule.input_shape, datamodule.num_classes)
        recorder.inputs = {
            "data": datamodule.fingerprint,
            "weights": file_fingerprint(weights.source) if weights is not None else None,
        }
        network = _prepare_network(cfg, network)
        plan = plan_finetune(cfg.get("finetune"), network, weights)  # freezes the backbone where it says so
        module = Classifier(
            network,
            cfg.optimizer,
            cfg.scheduler,
            datamodule.num_classes,
            cfg.trainer.log_every_n_steps,
            plan,
            **{key: cfg.trainer.get(key) for key in STEP_KEYS if cfg.trainer.get(key) is not None},
        )
        module.inputs = recorder.inputs
        checkpoint = resume_from or checkpoint_to_resume(
            recorder.run_dir, cfg.get("resume"), cfg.get("ckpt_path")
        )
        state = checkpoint_state(checkpoint)
        key, value = _checkpoint_setting(cfg, checkpoint)
        if state is not None:
            check_checkpoint_fits(state, module, key, value)
            check_same_inputs(state, recorder.inputs, key, value)
        ended = stop_reason(cfg, state.step, state.epoch, state.reached_target) if state else None
        # metrics.csv keeps the rows logged before the checkpoint: their logger step is below its step count (all
        # rows when training is over, test rows aside: a record written before time_to_target's row took its
        # validation's logger step has that row at the step count)
        resume_step = None if state is None else state.step + 1 if ended else state.step
        if state is not None and not ended:
            # what the run logged before the checkpoint stands until the resumed run logs it again: a run resumed
            # close to its end may not validate (or log a training window) before it stops
            recorder.restored_metrics = _logged_before(recorder.run_dir, state, ended=False)
        recorder.parts = build_trainer(cfg, resume_step=resume_step)
        trainer = recorder.parts.trainer
        # started now, so that a job failing in fit has its failed W&B run; a resumed job continues its run
        start_wandb_runs(trainer.loggers, cfg, resuming=checkpoint is not None)
        if ended:
            log.info(
                "%s is where the run ends (%s): finishing its record without training", checkpoint, ended
            )
            _finish_from_checkpoint(recorder, module, datamodule, checkpoint, state)
        else:
            try:
                trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint)
            except KeyError as err:  # another optimizer's state: its first step misses a hyperparameter
                if state is None or trainer.global_step > state.step:
                    raise
                raise ConfigError(
                    key,
                    value,
                    "a checkpoint of the optimizer this config builds (resume with the overrides the run was made "
                    "with)",
                    problem=f"its optimizer state has no {err} for this config's optimizer",
                ) from None
        if trainer.interrupted:
            raise KeyboardInterrupt
        saves_last = [c for c in trainer.checkpoint_callbacks if getattr(c, "save_last", False)]
        stopped_inside_epoch = any(getattr(c, "stopped_at", None) == trainer.global_step for c in saves_last)
        if not ended and saves_last and not stopped_inside_epoch:
            # last.ckpt at the state training ended in, after the final validation: a job killed from here on
            # (test, record) has its record finished from it with the final metrics and time to target. One
            # written where training stopped inside an epoch stands (UntimedCheckpoint._stops_inside_epoch).
            recorder.save_last_checkpoint()
        if cfg.run_test and not ended:
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
