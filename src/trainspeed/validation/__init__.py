"""Validation of a composed config before anything heavy is imported or built.

`validate(cfg)` checks every config group against its schema (types and ranges, schemas.py), then the settings
that must agree with each other (cross_checks.py), then the checkpoint a run starts from (resume= / ckpt_path=,
record/checkpoint_file.py), then, for a timm backbone only, the model against the data (timm_checks.py, the one
check that imports torch). The first problem found is raised as a ConfigError (or a DataError for a missing file)
naming the key, the value and what is accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from trainspeed.config_paths import defined_keys, defined_top_level_keys
from trainspeed.errors import ConfigError
from trainspeed.options import INITIALIZERS
from trainspeed.record.checkpoint_file import start_checkpoint
from trainspeed.validation import cross_checks
from trainspeed.validation.optimizer_name import check_optimizer_name
from trainspeed.validation.refusal import record_refusal
from trainspeed.validation.rules import check_known_keys, check_schema
from trainspeed.validation.schemas import CALLBACK_CLASSES, FINETUNE, GROUPS, PLUGINS, TOP_LEVEL

__all__ = ["record_refusal", "validate"]

OPTIONAL = ("divergence",)  # the job falls back to its defaults without it


def _plain(cfg: DictConfig, key: str, required: bool = True) -> Any:
    """cfg[key] resolved to plain Python values; unresolvable or missing (???) values become a ConfigError."""
    try:
        node = cfg.get(key)
        if node is None:
            if required:
                raise ConfigError(key, None, f"an option of the {key} config group (see conf/{key}/)")
            return None
        return (
            OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
            if OmegaConf.is_config(node)
            else node
        )
    except MissingMandatoryValue as err:
        raise ConfigError(
            err.full_key,
            "???",
            f"a value on the command line ({err.full_key}=...)",
            problem="required, no default",
        ) from None
    except OmegaConfBaseException as err:
        problem = str(err).splitlines()[0]
        raise ConfigError(err.full_key or key, None, "a value that resolves", problem=problem) from None


def _check_plugin(group: str, name: str, entry: dict[str, Any]) -> None:
    """One callbacks / logger entry: by its name (callbacks.diagnostics, ...) or, for checkpoints, by its class."""
    key = f"{group}.{name}"
    if key in PLUGINS:
        check_schema(entry, key, PLUGINS[key])
    class_name = str(entry.get("_target_")).rsplit(".", 1)[-1]
    if group == "callbacks" and class_name in CALLBACK_CLASSES:
        check_schema(entry, key, CALLBACK_CLASSES[class_name])
        cross_checks.check_checkpoint_schedule(key, entry)


def _run_folder(resume: str | None) -> Path:
    """The run's folder: Hydra's output folder (resume= sets it to the resumed run's), else the resumed run's or
    the working directory (as the job takes it outside Hydra)."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(resume) if resume else Path.cwd()


def validate(cfg: DictConfig) -> None:
    """Refuse a config that cannot train, before torch is imported (except to look up a timm model)."""
    unknown = {key: cfg[key] for key in cfg if key not in defined_top_level_keys()}  # +optimzer.lr=0.1
    check_known_keys(
        {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in unknown.items()},
        "",
        defined_top_level_keys(),
    )
    values = {key: _plain(cfg, key, required=key not in OPTIONAL) for key in GROUPS}
    for key in TOP_LEVEL:
        values[key] = _plain(cfg, key, required=False)  # nullability is the schema's to judge
    check_schema(values, "", TOP_LEVEL)
    for group, schema in GROUPS.items():
        if values[group] is None and group in OPTIONAL:
            values[group] = {}
        if not isinstance(values[group], dict):
            raise ConfigError(
                group, values[group], f"an option of the {group} config group (see conf/{group}/)"
            )
        check_schema(values[group], group, schema)
        if (
            group != "trainer"
        ):  # Lightning's Trainer takes more than the schema names (training/trainer_factory.py)
            check_known_keys(values[group], group, {*schema, *defined_keys(group)})
    data, model, norm = values["data"], values["model"], values["normalization"]
    if isinstance(values["optimizer"].get("name"), str):
        check_optimizer_name(values["optimizer"]["name"])
    cross_checks.check_target(values["target"])
    cross_checks.check_data(data)
    finetune = _plain(cfg, "finetune", required=False)
    if isinstance(finetune, dict):
        check_schema(finetune, "finetune", FINETUNE)
    cross_checks.check_model(model, norm, data, scratch=cross_checks.finetune_strategy(finetune) == "scratch")
    initializer = values["initializer"]
    if isinstance(initializer.get("name"), str):  # trunc_normal has no gain, default neither gain nor std
        cross_checks.check_option_keys("initializer", initializer["name"], initializer, INITIALIZERS)
    cross_checks.check_trainer(values["trainer"])
    cross_checks.check_optimizer_device(values["optimizer"], values["trainer"])
    cross_checks.check_finetune(finetune, model, values["trainer"])
    for group in ("callbacks", "logger"):
        entries = _plain(cfg, group, required=False)
        cross_checks.check_plugin_group(group, entries)
        for name, entry in (entries or {}).items():
            if isinstance(entry, dict):
                _check_plugin(group, name, entry)
    start_checkpoint(_run_folder(values["resume"]), values["resume"], values["ckpt_path"])
    if model.get("family") == "timm":
        from trainspeed.validation.timm_checks import check_timm_model  # imports timm and torch

        check_timm_model(model, norm, cross_checks.image_shape(data))
