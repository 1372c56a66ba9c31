"""wandb imported before torch when the config logs to W&B: the same imports, ~0.5 s sooner.

wandb's settings and public-API models (pydantic, with `use_attribute_docstrings`) locate their source through
`inspect.getmodule`, which scans every loaded module for each class. `wandb.init` imports `wandb.apis.public`
itself; after torch and Lightning (~4000 modules) those scans cost about 0.5 s more than before them (~600).
"""

from __future__ import annotations

from omegaconf import DictConfig


def logs_to_wandb(cfg: DictConfig) -> bool:
    """Whether a logger of the `logger` group is a W&B logger (trainspeed's WandbRunLogger or Lightning's)."""
    loggers = cfg.get("logger") or {}
    return any(
        entry is not None and "wandb" in str(entry.get("_target_", "")).lower() for entry in loggers.values()
    )


def import_wandb_before_torch(cfg: DictConfig) -> None:
    """Import what `wandb.init` will import, now, when the config logs to W&B; nothing otherwise."""
    if logs_to_wandb(cfg):
        import wandb.apis.public  # noqa: F401 - imported for its cost only (see the module docstring)
