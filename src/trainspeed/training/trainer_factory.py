"""The Lightning Trainer with its callbacks and loggers, from the trainer / callbacks / logger config groups."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar

from trainspeed.callbacks.divergence import DivergenceGuard
from trainspeed.callbacks.rng_state import RngState
from trainspeed.callbacks.step_boundary_interrupt import StepBoundaryInterrupt
from trainspeed.callbacks.stepped_loop import SteppedLoop
from trainspeed.callbacks.time_to_target import TimeToTarget
from trainspeed.callbacks.train_clock import TrainClock
from trainspeed.errors import TrainspeedError
from trainspeed.lightning_refusal import refusal_message
from trainspeed.record.resumable_csv import ResumableCSVLogger
from trainspeed.validation.rules import check_known_keys

# trainer.* keys that are trainspeed's own, not Lightning Trainer arguments
OWN_TRAINER_KEYS = ("compile", "charge_compile", "channels_last", "steps_per_iteration")
# Lightning settings the training step applies itself (manual optimization; see training/classifier.py)
STEP_KEYS = ("accumulate_grad_batches", "gradient_clip_val", "gradient_clip_algorithm")


@dataclass
class TrainerParts:
    trainer: pl.Trainer
    clock: TrainClock
    time_to_target: TimeToTarget
    divergence: DivergenceGuard


def _instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every entry of a name -> config dict; entries set to null are skipped."""
    if not group:
        return []
    return [instantiate(item) for item in group.values() if item is not None and "_target_" in item]


def build_trainer(cfg: DictConfig, resume_step: int | None = None) -> TrainerParts:
    """A Trainer whose callbacks always include the training clock, the time-to-target check and the divergence
    guard (the measurement itself, so not optional like the `callbacks` group), and the RNG states in checkpoints.

    `resume_step`: the global step of the checkpoint a resumed run starts from (metrics.csv keeps earlier rows)."""
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    for key in (*OWN_TRAINER_KEYS, *STEP_KEYS):
        kwargs.pop(key, None)
    # the rest goes to Lightning's Trainer: a key it does not take is one line, not a TypeError's traceback
    lightning_keys = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self", "callbacks", "logger"}
    check_known_keys(kwargs, "trainer", {*lightning_keys, *OWN_TRAINER_KEYS, *STEP_KEYS})
    callbacks = _instantiate_all(cfg.get("callbacks"))
    # Lightning refuses a progress bar or checkpoint callback that its own switches turned off: honour the switch
    if kwargs.get("enable_progress_bar") is False:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    # fast_dev_run writes no checkpoint (Lightning's ModelCheckpoint still writes save_last when training ends)
    if kwargs.get("enable_checkpointing") is False or kwargs.get("fast_dev_run"):
        callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
    # checkpoints by step last: one written after a validation holds the other checkpoints' state of that validation
    callbacks.sort(key=lambda c: isinstance(c, ModelCheckpoint) and bool(c._every_n_train_steps))
    if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
        kwargs["enable_checkpointing"] = False  # else Lightning adds its own (epoch=…-step=….ckpt)
    trainer_cfg = cfg.trainer
    clock = TrainClock(
        compiled=bool(trainer_cfg.get("compile")), charge_compile=bool(trainer_cfg.get("charge_compile"))
    )
    stepped = SteppedLoop(
        trainer_cfg.get("steps_per_iteration", 1), trainer_cfg.get("accumulate_grad_batches", 1)
    )
    target = cfg.target
    stop = bool(target.get("stop"))  # resolved by run_mode.resolve_run_mode (null: stop in sweeps)
    timed = stop or cfg.get("run_mode") == "sweep"  # its time to target is what it is run for
    time_to_target = TimeToTarget(
        clock, target.metric, target.value, stop=stop, mode=target.get("mode", "auto"), timed=timed
    )
    guard_cfg = cfg.get("divergence") or {}
    divergence = DivergenceGuard(guard_cfg.get("max_loss_ratio", 10.0), guard_cfg.get("patience", 3))
    loggers = _instantiate_all(cfg.get("logger"))
    for logger in loggers:
        if isinstance(logger, ResumableCSVLogger):
            logger.resume_step = resume_step
    try:
        trainer = pl.Trainer(
            **kwargs,
            # the interrupt callback first: a deferred Ctrl-C is raised before any other callback starts the iteration
            callbacks=[
                StepBoundaryInterrupt(),
                stepped,
                clock,
                time_to_target,
                divergence,
                RngState(),
                *callbacks,
            ],
            logger=loggers or False,
        )
    except (
        ValueError,
        TypeError,
    ) as err:  # Lightning refuses some arguments with these, not its own exception
        raise TrainspeedError(refusal_message(err, cfg)) from None
    return TrainerParts(trainer, clock, time_to_target, divergence)
