"""One schema per config group: key -> rule for every key the group's options define.

A key that an option does not define is simply not checked (options of a group differ: `momentum` exists only for
the SGD family). Unknown keys never get this far: Hydra's struct mode already refuses `optimizer.lrr=0.1`.
Checks that involve several keys or groups are in cross_checks.py.
"""

from __future__ import annotations

from trainspeed.options import (
    ACCELERATORS,
    ACTIVATIONS,
    DATASETS,
    DEFAULT,
    FAMILIES,
    FINETUNE_STRATEGIES,
    INITIALIZERS,
    METRICS,
    NORMALIZATIONS,
    PRECISIONS,
    SCHEDULERS,
)
from trainspeed.validation.rules import (
    AnyOf,
    Choice,
    Exactly,
    Flag,
    Integer,
    MappingRule,
    Number,
    Rule,
    Seq,
    Text,
)

UNIT = Number(ge=0, lt=1)  # momentum, betas, dropout: 1 would never forget / drop everything
NULL = Exactly(None)

OPTIMIZER: dict[str, Rule] = {
    "name": Text(),
    "lr": Number(gt=0),
    "weight_decay": Number(ge=0),
    "momentum": UNIT,
    "betas": Seq(UNIT, length=2),
    "eps": Number(gt=0, nullable=True),
    "decay_norm_and_bias": Flag(),
    "kwargs": MappingRule(),
}

SCHEDULER: dict[str, Rule] = {
    "name": Choice(SCHEDULERS),
    "interval": Choice(("step", "epoch")),
    "step_size": Integer(ge=1),
    "gamma": Number(gt=0),
    "warmup_steps": Integer(ge=0),
    "warmup_start_factor": Number(gt=0, le=1),
    "min_lr_factor": Number(ge=0, le=1),
    "max_lr_factor": Number(gt=0),
    "pct_start": Number(gt=0, lt=1),
    "anneal_strategy": Choice(("cos", "linear")),
    "div_factor": Number(gt=0),
    "final_div_factor": Number(gt=0),
    "monitor": Choice(METRICS),
    "mode": Choice(("min", "max")),
    "factor": Number(gt=0, lt=1),
    "patience": Integer(ge=0),
    "threshold": Number(ge=0),
    "min_lr": Number(ge=0),
}

MODEL: dict[str, Rule] = {
    "family": Choice(FAMILIES),
    "depth": Integer(ge=1),
    "width": Integer(ge=1),
    "dropout": UNIT,
    "channels": Seq(Integer(ge=1)),
    "convs_per_stage": Integer(ge=1),
    "pool": Choice(("max", "avg")),
    "name": Text(),
    "pretrained": Flag(),
    "weights": Text(nullable=True),
    "drop_rate": UNIT,
    "kwargs": MappingRule(),
}

ACTIVATION: dict[str, Rule] = {
    "name": Choice((*ACTIVATIONS, DEFAULT)),
    "negative_slope": Number(ge=0),
}

NORMALIZATION: dict[str, Rule] = {
    "name": Choice((*NORMALIZATIONS, DEFAULT)),
    "momentum": Number(ge=0, le=1, nullable=True),
    "num_groups": Integer(ge=1),
}

INITIALIZER: dict[str, Rule] = {
    "name": Choice(INITIALIZERS),
    "std": Number(gt=0),
    "gain": AnyOf(
        (Exactly("auto"), Number(gt=0, nullable=True)),
        text="null (the paper's gain), auto (the activation's gain) or a number > 0",
    ),
}

DATA: dict[str, Rule] = {
    "name": Choice(DATASETS),
    "root": Text(),
    "download": Flag(),
    "batch_size": Integer(ge=1),
    "eval_batch_size": Integer(ge=1),
    "image_size": Integer(ge=1, nullable=True),
    "val_fraction": Number(gt=0, lt=1),
    "test_fraction": Number(ge=0, lt=1),
    "classes": Seq(Integer(ge=0), min_len=2, nullable=True),
    "num_samples": Integer(ge=1),
    "num_classes": Integer(ge=2),
    "shape": AnyOf(
        (Seq(Integer(ge=1), length=1), Seq(Integer(ge=1), length=3)),
        text="[features] or [channels, height, width], each an integer ≥ 1",
    ),
    "noise": Number(ge=0),
}

_BATCHES = Number(gt=0, le=1)  # a fraction of the batches (float) or a count (int)
TRAINER: dict[str, Rule] = {
    "accelerator": Choice(ACCELERATORS),
    "strategy": Text(),
    "devices": AnyOf(
        (Exactly("auto"), Integer(ge=1), Exactly(-1), Seq(Integer(ge=0)), Text()),
        text="auto, a count ≥ 1, -1 (all) or a list of device indices",
    ),
    "num_nodes": Integer(ge=1),
    "precision": Choice(PRECISIONS),
    "fast_dev_run": AnyOf((Flag(), Integer(ge=0))),
    "max_epochs": AnyOf(
        (Integer(ge=1), Exactly(-1), NULL), text="an integer ≥ 1 (-1: no limit, with max_steps)"
    ),
    "min_epochs": Integer(ge=0, nullable=True),
    "max_steps": AnyOf((Integer(ge=1), Exactly(-1)), text="an integer ≥ 1, or -1 for no limit"),
    "min_steps": Integer(ge=0, nullable=True),
    "max_time": AnyOf((Text(), MappingRule(), NULL), text='null, "DD:HH:MM:SS" or a mapping like {hours: 1}'),
    "limit_train_batches": AnyOf((_BATCHES, Integer(ge=1), NULL)),
    # 0 would skip validation, and with it the time-to-target measurement
    "limit_val_batches": AnyOf((_BATCHES, Integer(ge=1), NULL)),
    "limit_test_batches": AnyOf((Number(ge=0, le=1), Integer(ge=0), NULL)),
    "limit_predict_batches": AnyOf((Number(ge=0, le=1), Integer(ge=0), NULL)),
    "overfit_batches": AnyOf((Number(ge=0, le=1), Integer(ge=0))),
    "val_check_interval": AnyOf((_BATCHES, Integer(ge=1), NULL)),
    "check_val_every_n_epoch": Integer(ge=1, nullable=True),
    "num_sanity_val_steps": Integer(ge=-1),
    "log_every_n_steps": Integer(ge=1),
    "accumulate_grad_batches": Integer(ge=1),
    "steps_per_iteration": Integer(ge=1),
    "gradient_clip_val": Number(ge=0, nullable=True),
    "gradient_clip_algorithm": Choice(("norm", "value"), nullable=True),
    "deterministic": AnyOf((Flag(nullable=True), Exactly("warn"))),
    "benchmark": Flag(nullable=True),
    "reload_dataloaders_every_n_epochs": Integer(ge=0),
    **{
        key: Flag()
        for key in (
            "enable_checkpointing",
            "enable_progress_bar",
            "enable_model_summary",
            "inference_mode",
            "use_distributed_sampler",
            "detect_anomaly",
            "barebones",
            "sync_batchnorm",
            "compile",
            "charge_compile",
            "channels_last",
        )
    },  # fmt: skip
}

TARGET: dict[str, Rule] = {
    "metric": Choice(METRICS),
    "value": Number(),  # its range depends on the metric (cross_checks.check_target)
    "stop": Flag(nullable=True),  # null: the default for the run mode
    "mode": Choice(("auto", "max", "min")),
}

DIVERGENCE: dict[str, Rule] = {
    "max_loss_ratio": Number(gt=1, infinite=True),  # inf: only NaN / inf losses count as diverging
    "patience": Integer(ge=1),
}

# the finetune group is optional (present once composed)
FINETUNE: dict[str, Rule] = {
    "name": Choice(FINETUNE_STRATEGIES),
    "backbone_lr_factor": Number(gt=0),
    "unfreeze_epoch": Integer(ge=0),
}

TOP_LEVEL: dict[str, Rule] = {
    "seed": Integer(ge=0, le=2**32 - 1),  # NumPy's seed range
    "run_test": Flag(),
    "resume": Text(nullable=True),  # a run folder (resume.py checks it is one)
    "ckpt_path": Text(nullable=True),  # a checkpoint file, or Lightning's "last"
}

# settings of optional entries of the callbacks / logger groups, checked when the entry is present
PLUGINS: dict[str, dict[str, Rule]] = {
    "callbacks.diagnostics": {"every_n_steps": Integer(ge=1)},
    "logger.wandb": {
        "watch": Choice(("gradients", "parameters", "all"), nullable=True),
        "watch_log_freq": Integer(ge=1),
    },
}

# the arguments of Lightning's ModelCheckpoint (trainspeed's UntimedCheckpoint is one), whatever the entry's name
CHECKPOINT: dict[str, Rule] = {
    "every_n_train_steps": Integer(ge=0, nullable=True),  # 0: not by steps
    "every_n_epochs": Integer(ge=0, nullable=True),
    "save_top_k": Integer(ge=-1),  # -1: every checkpoint, 0: none
    "mode": Choice(("min", "max")),
}
# callbacks entries checked by their class (the last part of `_target_`)
CALLBACK_CLASSES: dict[str, dict[str, Rule]] = {
    "UntimedCheckpoint": CHECKPOINT,
    "ModelCheckpoint": CHECKPOINT,
}

GROUPS: dict[str, dict[str, Rule]] = {
    "data": DATA,
    "model": MODEL,
    "optimizer": OPTIMIZER,
    "scheduler": SCHEDULER,
    "initializer": INITIALIZER,
    "activation": ACTIVATION,
    "normalization": NORMALIZATION,
    "trainer": TRAINER,
    "target": TARGET,
    "divergence": DIVERGENCE,
}
