"""Run or sweep: the settings whose default depends on how a job was launched, resolved in one place.

A single run and a job of a sweep answer different questions, so a few defaults differ:

| setting (when null)          | single run               | sweep job                                   |
|------------------------------|--------------------------|---------------------------------------------|
| `target.stop`                | false: train to the end  | true: stop at the target                    |
| `trainer.val_check_interval` | Lightning's: every epoch | every `SWEEP_VAL_CHECK_STEPS` optimizer steps |

(In a sweep, `trainer.check_val_every_n_epoch` set to more than 1 asks for validation by epochs: the interval then
stays Lightning's.)

The mode is `run_mode` in the config (null: a sweep job under `-m`, else a run); the job's summary.json records
the mode it resolved to, so `reproduce` and `resume`, which re-launch a job as a single run, pass `run_mode=` and
resolve every setting exactly as the original job did. Settings given explicitly are never changed.
"""

from __future__ import annotations

from omegaconf import DictConfig, open_dict

from trainspeed.config_paths import in_sweep
from trainspeed.errors import ConfigError

MODES = ("run", "sweep")
# a sweep's time-to-target resolution: validating every 5 optimizer steps costs little on the small data sets
# sweeps compare techniques on, and makes time to target precise to 5 steps instead of an epoch
SWEEP_VAL_CHECK_STEPS = 5


def resolve_run_mode(cfg: DictConfig) -> str:
    """Fill the mode-dependent settings left null in `cfg` (in place) and return the mode; idempotent."""
    mode = cfg.get("run_mode")
    if mode is None:
        mode = "sweep" if in_sweep() else "run"
    if mode not in MODES:
        raise ConfigError("run_mode", mode, "run, sweep, or null (sweep for a job of -m, run otherwise)")
    with open_dict(cfg):
        cfg.run_mode = mode
        if cfg.target.get("stop") is None:
            cfg.target.stop = mode == "sweep"
        # an explicit check_val_every_n_epoch (other than the default 1) asks for validation by epochs
        by_epochs = cfg.trainer.get("check_val_every_n_epoch") not in (None, 1)
        if mode == "sweep" and cfg.trainer.get("val_check_interval") is None and not by_epochs:
            cfg.trainer.val_check_interval = SWEEP_VAL_CHECK_STEPS
            cfg.trainer.check_val_every_n_epoch = None  # count the steps across epochs
    return mode


def stop_reason(cfg: DictConfig, steps: int, epochs: int, reached_target: bool) -> str | None:
    """Why a run that got this far under `cfg` (resolved) would not train any further; None when it would."""
    trainer = cfg.trainer
    if reached_target and cfg.target.get("stop"):
        return "it reached its target and target.stop is set"
    max_steps = trainer.get("max_steps")
    if max_steps is not None and max_steps >= 0 and steps >= max_steps:
        return f"trainer.max_steps={max_steps} is reached"
    max_epochs = trainer.get("max_epochs")
    if max_epochs is not None and max_epochs >= 0 and epochs >= max_epochs:
        return f"trainer.max_epochs={max_epochs} is reached"
    return None
