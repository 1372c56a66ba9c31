"""`python -m trainspeed.lr_find [overrides]`: the learning-rate range test (Smith 2017) on the configured network.

Lightning's learning-rate finder (Tuner.lr_find) trains `num_training` steps while the learning rate grows
exponentially from `min_lr` to `max_lr`, and suggests the rate where the smoothed loss falls fastest. The run
folder gets `lr_find.png` (loss vs learning rate, the suggestion marked) and `lr_find.json`; the override to use is
printed. Range and steps: `+lr_find.min_lr=1e-6 +lr_find.max_lr=1 +lr_find.num_training=100`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from trainspeed.config_paths import CONFIG_NAME, config_dir
from trainspeed.errors import TrainspeedError
from trainspeed.validation import validate

DEFAULTS = {"min_lr": 1e-6, "max_lr": 1.0, "num_training": 100}


def range_settings(cfg: DictConfig) -> dict[str, Any]:
    """The range test's settings (`lr_find.*` over DEFAULTS), refused with one line when a key is unknown, a
    value out of range, or the range empty (ConfigError)."""
    from omegaconf import OmegaConf

    from trainspeed.errors import ConfigError
    from trainspeed.validation.rules import Integer, Number, check_known_keys, check_schema

    given = OmegaConf.to_container(cfg.lr_find, resolve=True) if cfg.get("lr_find") is not None else {}
    if not isinstance(given, dict):
        raise ConfigError("lr_find", given, "a mapping: +lr_find.min_lr=1e-6 +lr_find.max_lr=1 ...")
    check_known_keys(given, "lr_find", DEFAULTS)
    settings = {**DEFAULTS, **given}
    check_schema(
        settings, "lr_find", {"min_lr": Number(gt=0), "max_lr": Number(gt=0), "num_training": Integer(ge=2)}
    )
    if not settings["max_lr"] > settings["min_lr"]:
        raise ConfigError(
            "lr_find.max_lr", settings["max_lr"], f"a number > lr_find.min_lr ({settings['min_lr']:g})"
        )
    return settings


def _range_test_module(classifier: type) -> type:
    """The Classifier under Lightning's automatic optimization: the finder reads each step's loss from what
    `training_step` returns and steps its own learning-rate schedule, which the Classifier's manual, grouped steps
    (built for the timed loop) would hide from it."""
    import torch.nn.functional as F

    class RangeTestClassifier(classifier):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.automatic_optimization = True

        def training_step(self, batch, batch_idx: int):
            x, y = batch
            return F.cross_entropy(self.network(x), y)

    return RangeTestClassifier


def find_lr(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run the range test for `cfg`, write lr_find.png / lr_find.json into `run_dir`, return the result."""
    import matplotlib

    matplotlib.use("Agg")
    import pytorch_lightning as pl
    from pytorch_lightning.tuner import Tuner

    from trainspeed.data import build_datamodule
    from trainspeed.model import build_network
    from trainspeed.record.atomic import write_json_atomic
    from trainspeed.training.classifier import Classifier
    from trainspeed.training.finetune import plan_finetune

    settings = range_settings(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg.data, cfg.seed)
    network, weights = build_network(cfg, datamodule.input_shape, datamodule.num_classes)
    plan = plan_finetune(cfg.get("finetune"), network, weights)
    module = _range_test_module(Classifier)(
        network, cfg.optimizer, cfg.scheduler, datamodule.num_classes, cfg.trainer.log_every_n_steps, plan
    )
    # a bare Trainer: the range test drives the learning rate itself, so no clock, target, checkpoints or loggers
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        precision=cfg.trainer.precision,
        # finite (the module's schedulers size themselves by it), and enough epochs for every step of the test
        # even at one batch per epoch: a test cut short by max_epochs would suggest a rate from a part of the range
        max_epochs=max(int(cfg.trainer.max_epochs), int(settings["num_training"])),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(run_dir),
    )
    finder = Tuner(trainer).lr_find(
        module,
        datamodule=datamodule,
        min_lr=float(settings["min_lr"]),
        max_lr=float(settings["max_lr"]),
        num_training=int(settings["num_training"]),
        update_attr=False,  # the optimizer's learning rate comes from the config, not a module attribute
    )
    suggestion = finder.suggestion() if finder is not None else None
    figure = finder.plot(suggest=suggestion is not None)
    figure.savefig(run_dir / "lr_find.png", dpi=100, bbox_inches="tight")
    result = {
        "suggested_lr": suggestion,
        "optimizer": cfg.optimizer.name,
        **{k: settings[k] for k in DEFAULTS},
        "lr": [float(x) for x in finder.results["lr"]],
        "loss": [float(x) for x in finder.results["loss"]],
    }
    write_json_atomic(run_dir / "lr_find.json", result)
    return result


@hydra.main(version_base="1.3", config_path=config_dir(), config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    try:
        validate(cfg)
        range_settings(cfg)
    except TrainspeedError as err:
        print(f"trainspeed: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    result = find_lr(cfg, run_dir)
    if result["suggested_lr"] is None:
        print(f"trainspeed: no learning rate suggested (too few steps?); plot in {run_dir / 'lr_find.png'}")
        raise SystemExit(1)
    print(f"suggested learning rate: {result['suggested_lr']:.3g} (plot: {run_dir / 'lr_find.png'})")
    print(f"use: optimizer.lr={result['suggested_lr']:.3g}")


if __name__ == "__main__":
    main()
