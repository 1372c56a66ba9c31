"""Checks that involve more than one key: ranges that depend on another value, and contradictory settings."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from trainspeed.config_paths import option_keys
from trainspeed.errors import ConfigError, DataError
from trainspeed.options import (
    COMPILED_OPTIMIZERS,
    FAMILIES,
    FINETUNE_STRATEGIES,
    GPU_ONLY_PRECISIONS,
    NATIVE_CLASSES,
    NATIVE_IMAGES,
    NEEDS_WEIGHTS,
)
from trainspeed.validation.rules import divisors

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def check_target(target: dict[str, Any]) -> None:
    """An accuracy target lies in (0, 1]; a loss target is > 0 (a loss of exactly 0 is never reached)."""
    metric, value = target.get("metric", "val/acc"), target.get("value")
    if value is None:  # no target value at all: the schema refuses a null one
        return
    if "acc" in metric and not 0 < value <= 1:
        raise ConfigError("target.value", value, f"a number in (0, 1] ({metric} is an accuracy)")
    if "loss" in metric and not (value > 0 and math.isfinite(value)):
        raise ConfigError("target.value", value, f"a number > 0 ({metric} is a loss)")


def check_data(data: dict[str, Any]) -> None:
    """Split fractions that leave training data, class subsets that exist, an image folder that exists."""
    held_out = data.get("val_fraction", 0) + data.get("test_fraction", 0)
    if held_out >= 1:
        raise ConfigError(
            "data.val_fraction",
            data["val_fraction"],
            f"fractions with data.val_fraction + data.test_fraction < 1 (now {held_out:g}: no training data left)",
        )
    classes, name = data.get("classes"), data.get("name")
    num_classes = data.get("num_classes") if name == "synthetic" else NATIVE_CLASSES.get(name)
    if classes is not None:
        if len(set(classes)) != len(classes):
            raise ConfigError("data.classes", classes, "distinct class indices")
        if num_classes is not None and max(classes) >= num_classes:
            raise ConfigError(
                "data.classes", classes, f"2 or more distinct class indices in 0..{num_classes - 1}"
            )
    if name == "imagefolder" and not Path(str(data.get("root"))).expanduser().is_dir():
        raise DataError(
            f"data.root={data.get('root')!r}: no such folder; expected root/<class>/<image> (ImageFolder layout)"
        )


def image_shape(data: dict[str, Any]) -> tuple[int | None, int | None]:
    """(channels, side) of the images the network will see; None where only the files can tell."""
    name, size = data.get("name"), data.get("image_size")
    if name == "synthetic":
        shape = data.get("shape") or [1, 8, 8]
        channels, native = (shape[0], 1) if len(shape) == 1 else (shape[0], min(shape[1:]))
    else:
        channels, native = NATIVE_IMAGES.get(name, (None, None))
    return channels, size if size is not None else native


def check_model(
    model: dict[str, Any], norm: dict[str, Any], data: dict[str, Any], scratch: bool = False
) -> None:
    """Settings the model family reads, groupnorm group counts that divide the widths, batchnorm with batches that
    have statistics, weights files."""
    family = model.get("family")
    check_option_keys("model", str(family), model, FAMILIES)
    if model.get("weights") and model.get("pretrained"):
        raise ConfigError(
            "model.pretrained",
            True,
            "false with model.weights=FILE (the file is the weights), or model.weights=null to load timm's "
            "pretrained weights",
            problem=f"model.weights={model['weights']!r} is what would be loaded",
        )
    if norm.get("name") == "groupnorm":
        widths = {"mlp": [model.get("width")], "cnn": model.get("channels")}.get(family)
        groups = norm.get("num_groups")
        if widths and any(w % groups for w in widths):
            gcd = math.gcd(*widths)
            where = f"model.width={widths[0]}" if family == "mlp" else f"model.channels={widths}"
            raise ConfigError(
                "normalization.num_groups",
                groups,
                f"a divisor of every normalized width ({where}): " + ", ".join(map(str, divisors(gcd))),
            )
    if family == "mlp" and norm.get("name") == "batchnorm" and data.get("batch_size") == 1:
        raise ConfigError(
            "data.batch_size", 1, "≥ 2 with normalization=batchnorm (a batch of one has no batch statistics)"
        )
    weights = model.get("weights")
    if weights and not scratch:  # finetune=scratch ignores the weights
        path = Path(weights).expanduser()
        if path.suffix not in WEIGHT_SUFFIXES:
            raise ConfigError("model.weights", weights, "a " + ", ".join(WEIGHT_SUFFIXES) + " file")
        if not path.is_file():
            raise DataError(
                f"model.weights={weights!r}: no such file (expected a {'/'.join(WEIGHT_SUFFIXES)} file)"
            )


def check_option_keys(group: str, option: str, values: dict[str, Any], options: tuple[str, ...]) -> None:
    """An option of a config group reads its own keys (conf/<group>/<option>.yaml): another option's key set to
    something (`+model.weights=w.safetensors` on model=mlp, `+model.width=512` on model=cnn,
    `+finetune.backbone_lr_factor=0.1` on finetune=linear_probe) would be ignored, and the record would claim a
    setting the run never used. Null or false is the same as not set."""
    own = option_keys(group, option)
    if not own:
        return
    for key, value in values.items():
        if key in own or value is None or value is False:
            continue
        readers = [o for o in options if key in option_keys(group, o)]
        raise ConfigError(
            f"{group}.{key}",
            value,
            f"the keys {group}={option} reads: {', '.join(sorted(own))}"
            + (f" ({group}.{key} is read by {group}={f' / {group}='.join(readers)})" if readers else ""),
            problem=f"{group}={option} does not read it",
        )


# what says a cluster starts every node's processes (SLURM, torchrun, MPI, LSF) or the user did by hand (Lightning's
# own environment: MASTER_ADDR and NODE_RANK set on each node)
CLUSTER_VARIABLES = ("SLURM_NTASKS", "TORCHELASTIC_RUN_ID", "WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "LSB_JOBID",
                     "NODE_RANK", "MASTER_ADDR")  # fmt: skip


def check_nodes(num_nodes: Any) -> None:
    """Several nodes need something that starts the other nodes' processes: without it Lightning waits for them
    for ever ("Initializing distributed ... 1/2")."""
    if isinstance(num_nodes, int) and num_nodes > 1 and not any(os.environ.get(v) for v in CLUSTER_VARIABLES):
        raise ConfigError(
            "trainer.num_nodes",
            num_nodes,
            "1 on one machine; more under SLURM (hydra/launcher=submitit_slurm), torchrun, or with MASTER_ADDR and "
            "NODE_RANK set on every node",
            problem="nothing starts the other nodes' processes here, and the run would wait for them for ever",
        )


def check_trainer(trainer: dict[str, Any]) -> None:
    """Epoch bounds that agree, and precisions or options the chosen device cannot run."""
    max_epochs, min_epochs = trainer.get("max_epochs"), trainer.get("min_epochs")
    if max_epochs == -1 and trainer.get("max_steps", -1) == -1:
        raise ConfigError(
            "trainer.max_epochs", -1, "an integer ≥ 1, or -1 together with trainer.max_steps ≥ 1"
        )
    if min_epochs is not None and max_epochs is not None and max_epochs != -1 and min_epochs > max_epochs:
        raise ConfigError("trainer.min_epochs", min_epochs, f"an integer ≤ trainer.max_epochs={max_epochs}")
    accumulate, devices = trainer.get("accumulate_grad_batches", 1), trainer.get("devices")
    several = (
        (isinstance(devices, int) and devices > 1) or isinstance(devices, list | tuple) and len(devices) > 1
    )
    if accumulate > 1 and (several or "ddp" in str(trainer.get("strategy"))):
        raise ConfigError(
            "trainer.accumulate_grad_batches",
            accumulate,
            "1 with several devices (raise data.batch_size: each device takes a batch per step)",
            problem="accumulation runs inside one training step, which DDP synchronizes once",
        )
    check_nodes(trainer.get("num_nodes", 1))
    needs_gpu = trainer.get("precision") in GPU_ONLY_PRECISIONS or bool(trainer.get("sync_batchnorm"))
    if trains_on_cpu(trainer, needs_gpu):
        on = "trainer.accelerator=cpu" if trainer.get("accelerator") == "cpu" else "this machine has no GPU"
        precision = trainer.get("precision")
        if precision in GPU_ONLY_PRECISIONS:
            raise ConfigError(
                "trainer.precision",
                precision,
                "32-true, bf16-mixed, bf16-true or 64-true on the CPU (or a GPU trainer such as trainer=gpu)",
                problem=f"GPU-only, and {on}; on the CPU Lightning would silently train in bf16-mixed instead",
            )
        if trainer.get("sync_batchnorm"):
            raise ConfigError(
                "trainer.sync_batchnorm",
                True,
                f"false on the CPU ({on}; SyncBatchNorm runs on GPUs)",
            )


def trains_on_cpu(trainer: dict[str, Any], needs_gpu: bool) -> bool:
    """Whether the run will train on the CPU: accelerator cpu, or auto on a machine without a GPU.

    Only a setting that needs a GPU (`needs_gpu`) asks torch about the machine (importing it costs seconds)."""
    accelerator = trainer.get("accelerator")
    if accelerator == "cpu":
        return True
    if accelerator != "auto" or not needs_gpu:
        return False
    import torch

    return not (torch.cuda.is_available() or torch.backends.mps.is_available())


def finetune_strategy(finetune: Any) -> str | None:
    """The fine-tuning strategy's name from the finetune group (absent when the group is not composed)."""
    if not isinstance(finetune, dict):
        return finetune if isinstance(finetune, str) else None
    for key in ("name", "strategy", "mode"):
        if isinstance(finetune.get(key), str):
            return finetune[key]
    return None


def check_finetune(finetune: Any, model: dict[str, Any], trainer: dict[str, Any]) -> None:
    """A strategy that freezes the backbone (at first or throughout) needs weights worth keeping; gradual
    unfreezing happens within the run and on one device."""
    strategy = finetune_strategy(finetune)
    if isinstance(finetune, dict) and strategy:
        check_option_keys("finetune", strategy, finetune, FINETUNE_STRATEGIES)
    if strategy in NEEDS_WEIGHTS and not (model.get("weights") or model.get("pretrained")):
        raise ConfigError(
            "finetune",
            strategy,
            "finetune=full or finetune=scratch for a network without weights, or load weights: "
            "model.weights=FILE or model.pretrained=true",
            problem=f"{strategy} keeps the backbone as loaded, but no weights are loaded",
        )
    if strategy != "gradual" or not isinstance(finetune, dict):
        return
    unfreeze, max_epochs = finetune.get("unfreeze_epoch"), trainer.get("max_epochs")
    if isinstance(unfreeze, int) and isinstance(max_epochs, int) and 0 < max_epochs <= unfreeze:
        raise ConfigError(
            "finetune.unfreeze_epoch",
            unfreeze,
            f"an epoch < trainer.max_epochs={max_epochs} (the backbone would never be unfrozen)",
        )
    devices, strategy_name = trainer.get("devices"), str(trainer.get("strategy", "auto"))
    if "ddp" in strategy_name or "fsdp" in strategy_name or (isinstance(devices, int) and devices > 1):
        raise ConfigError(
            "finetune",
            "gradual",
            "single-device training (trainer.devices=1, trainer.strategy=auto) for gradual unfreezing",
            problem=f"trainer.strategy={strategy_name}, trainer.devices={devices}",
        )


def check_plugin_group(group: str, entries: Any) -> None:
    """`callbacks` and `logger` map names to objects to build: each entry is null or has a `_target_`."""
    if entries is None:
        return
    if not isinstance(entries, dict):
        raise ConfigError(
            group, entries, f"a mapping of names to {{_target_: ...}} entries (see conf/{group}/)"
        )
    for name, entry in entries.items():
        if entry is not None and not (isinstance(entry, dict) and isinstance(entry.get("_target_"), str)):
            raise ConfigError(
                f"{group}.{name}", entry, "null (to remove it) or a mapping with a _target_ class"
            )


def check_checkpoint_schedule(key: str, entry: dict[str, Any]) -> None:
    """A ModelCheckpoint saves on one schedule, by steps, by epochs or by time: Lightning refuses two at once."""
    active = {  # the arguments are integers or null (the schema checked them)
        "every_n_train_steps": (entry.get("every_n_train_steps") or 0) >= 1,
        "every_n_epochs": (entry.get("every_n_epochs") or 0) >= 1,
        "train_time_interval": entry.get("train_time_interval") is not None,
    }
    chosen = [arg for arg, on in active.items() if on]
    if len(chosen) > 1:
        raise ConfigError(
            f"{key}.{chosen[1]}",
            entry[chosen[1]],
            f"one schedule per checkpoint callback: all but one of {', '.join(active)} null",
            problem=f"{key}.{chosen[0]}={entry[chosen[0]]} is set too",
        )


def check_optimizer_device(optimizer: dict[str, Any], trainer: dict[str, Any]) -> None:
    """timm's Kron optimizers compile their preconditioner update with torch.compile (inductor) when they are
    built; on the CPU that compilation ran out of memory (the process was killed) before the first step."""
    name = optimizer.get("name")
    if name in COMPILED_OPTIMIZERS and trains_on_cpu(trainer, needs_gpu=True):
        raise ConfigError(
            "optimizer.name",
            name,
            "an optimizer that runs without compiling on the CPU (e.g. adamw, lamb, lion, adafactorbv), "
            "or a GPU trainer (trainer=gpu)",
            problem=f"timm's {name} compiles its preconditioner with torch.compile, which exhausts memory on the CPU",
        )
