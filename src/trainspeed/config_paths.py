"""Where the Hydra config lives, whatever the working directory."""

from __future__ import annotations

import functools
from pathlib import Path

CONFIG_NAME = "train"


def _scale_lr(base_lr: float, base_batch_size: int, batch_size: int, rule: str = "linear") -> float:
    """Learning rate for another batch size: linear (Goyal et al., for SGD) or sqrt (for adaptive methods)."""
    ratio = float(batch_size) / float(base_batch_size)
    if rule not in ("linear", "sqrt"):
        raise ValueError(f"scale_lr rule={rule!r}; accepted: linear, sqrt")
    return float(base_lr) * (ratio if rule == "linear" else ratio**0.5)


def register_resolvers() -> None:
    """Config resolvers of trainspeed: ${scale_lr:base_lr,base_batch_size,batch_size,rule}, and
    ${metric_mode:metric,mode} (max or min: target.mode, auto resolved from the metric's name)."""
    from omegaconf import OmegaConf

    from trainspeed.options import metric_mode

    if not OmegaConf.has_resolver("scale_lr"):
        OmegaConf.register_new_resolver("scale_lr", _scale_lr)
    if not OmegaConf.has_resolver("metric_mode"):
        OmegaConf.register_new_resolver("metric_mode", metric_mode)


def in_sweep() -> bool:
    """True inside a job of a Hydra multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


register_resolvers()


def config_dir() -> str:
    """The `conf/` folder: inside the installed package (wheels ship it as trainspeed/conf) or, in a source
    checkout and editable installs, at the top of the repository."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / f"{CONFIG_NAME}.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"trainspeed's config folder was not found next to {here}")


@functools.cache
def defined_keys(group: str) -> frozenset[str]:
    """Every key trainspeed's own configs give the config group: the options' keys (conf/<group>/*.yaml) and the
    keys that presets and the main config set under `<group>:`. A key outside them and the group's schema is a
    typo or a setting nothing reads (`+optimizer.weight_decya=0.1`)."""
    import yaml

    keys: set[str] = set()
    for path in Path(config_dir()).rglob("*.yaml"):
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(doc, dict):
            continue
        if path.parent.name == group:
            keys |= {k for k in doc if k != "defaults"}
        if isinstance(doc.get(group), dict):
            keys |= set(doc[group])
    return frozenset(keys)


@functools.cache
def option_keys(group: str, option: str) -> frozenset[str]:
    """The keys of one option of a config group (conf/<group>/<option>.yaml; empty when there is no such file)."""
    import yaml

    path = Path(config_dir()) / group / f"{option}.yaml"
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return frozenset()
    return frozenset(k for k in doc if k != "defaults") if isinstance(doc, dict) else frozenset()


EXTRA_TOP_LEVEL = ("lr_find",)  # set with +lr_find.* for `python -m trainspeed.lr_find` (lr_find.py)


@functools.cache
def defined_top_level_keys() -> frozenset[str]:
    """The root keys trainspeed's configs define: train.yaml's, the config groups', and those the presets set at
    the root (`# @package _global_` files), plus EXTRA_TOP_LEVEL."""
    import yaml

    root = Path(config_dir())
    keys = {p.name for p in root.iterdir() if p.is_dir()} | set(EXTRA_TOP_LEVEL)
    for path in root.rglob("*.yaml"):
        text = path.read_text()
        if path.parent != root and "@package _global_" not in text:
            continue
        try:
            doc = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            continue
        keys |= {k for k in doc if k != "defaults"} if isinstance(doc, dict) else set()
    return frozenset(keys)


def extra_kwargs(cfg, key: str = "kwargs") -> dict:
    """A config's free-form `kwargs` mapping as a plain dict (empty when absent or null)."""
    from omegaconf import OmegaConf

    value = cfg.get(key)
    return dict(OmegaConf.to_container(value, resolve=True)) if value else {}


def compose_run_config(overrides: list[str], run_dir, job_name: str = "train"):
    """The config `python -m trainspeed.train <overrides>` would run with, writing into `run_dir`, with Hydra's
    runtime set as in a real run (so ${hydra:runtime.output_dir} and the job's overrides resolve): for code that
    runs a job in-process, such as the benchmark and the tests."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            CONFIG_NAME, overrides=[*overrides, f"hydra.run.dir={run_dir}"], return_hydra_config=True
        )
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.name = job_name
    HydraConfig.instance().set_config(cfg)
    return cfg


if __name__ == "__main__":
    print(config_dir())
