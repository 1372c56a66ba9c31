"""What a job's W&B run is called and how it is filed: name, group, tags and config, from the job's config."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from trainspeed.record.run_folder import override_key
from trainspeed.sweep_console import sweep_axes

# the technique axes a run is tagged with (one tag per axis: "optimizer:adam")
TECHNIQUE_AXES = ("data", "model", "optimizer", "scheduler", "initializer", "activation", "normalization")
# overrides that change how a run is logged or stored, not what it trains
_UNNAMED_PREFIXES = ("hydra.", "logger.")
MAX_TAG = 64  # W&B refuses longer tags
MAX_NAME = 128


def short_override(override: str) -> str:
    """`optimizer.lr=0.01` -> `lr=0.01`; `+trainer.foo=1` -> `foo=1`; group choices stay `optimizer=adam`."""
    key, sep, value = override.lstrip("+~").partition("=")
    return f"{key.rsplit('.', 1)[-1]}{sep}{value}"


def run_name(overrides: list[str], swept: set[str] | None = None) -> str:
    """The job's overrides in short form (`optimizer=adam,lr=0.01`): in a sweep only those the sweep varies
    (the others are the same for the whole group); "defaults" when there are none."""
    kept = [o for o in overrides if not override_key(o).startswith(_UNNAMED_PREFIXES)]
    if swept and any(override_key(o) in swept for o in kept):
        kept = [o for o in kept if override_key(o) in swept]
    return (",".join(short_override(o) for o in kept) or "defaults")[:MAX_NAME]


def job_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def swept_keys() -> set[str]:
    """The keys this job's Hydra multirun varies (`sweep_axes`: known in every launcher's job processes, unlike
    the command line, which a submitit job does not have). Empty for a single run."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return set()
    return set(sweep_axes())


def sweep_group() -> str | None:
    """The same name for every job of one Hydra multirun (the sweep folder's name); None for a single run."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(HydraConfig.get().sweep.dir).name


def technique(cfg: DictConfig, axis: str, choice: str | None) -> str | None:
    """The option chosen on one axis: the config group's choice, or the model/optimizer a generic option names."""
    section = cfg.get(axis)
    name = section.get("name") if isinstance(section, DictConfig) else None
    # the `timm` options pass any timm model/optimizer through: its name is the real choice
    if choice in (None, "timm") and name:
        return str(name)
    if choice is None and isinstance(section, DictConfig):
        return section.get("family")
    return choice


def run_tags(cfg: DictConfig, extra: list[str] | None = None) -> list[str]:
    """Experiment name, then `axis:technique` per technique axis (plus `pretrained`), each at most 64 chars."""
    choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
    tags = [str(cfg.experiment_name)] if cfg.get("experiment_name") is not None else []
    for axis in TECHNIQUE_AXES:
        value = technique(cfg, axis, choices.get(axis))
        if value is not None:
            tags.append(f"{axis}:{value}")
    model = cfg.get("model")
    if isinstance(model, DictConfig) and (model.get("pretrained") or model.get("weights")):
        tags.append("pretrained")
    tags += [str(t) for t in extra or []]
    return list(dict.fromkeys(t[:MAX_TAG] for t in tags))


def config_beside_sweep(config: dict[str, Any], present: Mapping[str, Any]) -> dict[str, Any]:
    """What of the job's resolved config to add to a run that already holds `present`: the keys a W&B Sweep set
    (and locked) before the run started, or an earlier attempt's config when a run is continued.

    A key already there keeps its value. Where the sweep chose a config group (`optimizer: adam`), the rest of
    that section goes in as flat dotted keys (`optimizer.name`, `optimizer.betas`, ...): W&B locks a swept key
    whole and refuses a nested section under it, and shows a dotted key like the nested one (`optimizer.lr` in the
    run table either way). A key the sweep set itself (`optimizer.lr`) is left to the sweep."""
    added: dict[str, Any] = {}
    for key, value in config.items():
        if key not in present:
            added[key] = value
        elif isinstance(value, dict) and not isinstance(present[key], dict):
            added.update({k: v for k, v in _leaves(value, key).items() if k not in present})
    return added


def _leaves(section: dict[str, Any], prefix: str) -> dict[str, Any]:
    """`{"betas": [0.9, 0.999], "a": {"b": 1}}` under `optimizer` -> `optimizer.betas`, `optimizer.a.b`."""
    flat: dict[str, Any] = {}
    for key, value in section.items():
        dotted = f"{prefix}.{key}"
        if isinstance(value, dict) and value:
            flat.update(_leaves(value, dotted))
        else:
            flat[dotted] = value
    return flat


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The job's config with every interpolation resolved (nested); unresolved where resolving fails
    (a config composed outside a Hydra job cannot resolve `${hydra:...}`)."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except Exception:  # noqa: BLE001 - any resolver error: keep the config as written rather than lose it
        return OmegaConf.to_container(cfg, resolve=False)
