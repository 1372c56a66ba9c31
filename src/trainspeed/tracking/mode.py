"""The W&B run mode: from the config, else WANDB_MODE, else online when an API key is configured, else offline."""

from __future__ import annotations

import os

from trainspeed.errors import ConfigError

MODES = ("online", "offline", "disabled")
_MODE_ALIASES = {"run": "online", "dryrun": "offline"}  # the older names wandb still accepts


def has_credentials() -> bool:
    """Whether W&B would find an API key (environment, `wandb login`'s netrc entry, or its settings file)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    try:
        from wandb.sdk import wandb_setup
        from wandb.sdk.lib.wbauth import read_netrc_auth

        settings = wandb_setup.singleton().settings
        return bool(settings.api_key or read_netrc_auth(host=settings.base_url))
    except Exception:  # noqa: BLE001 - an unreadable netrc or settings file means: no usable key
        return False


def resolve_mode(mode: str | None) -> str:
    """The run's mode: `logger.wandb.mode` when set, else WANDB_MODE, else online with an API key, else offline."""
    setting = "logger.wandb.mode"
    if mode in (None, "auto"):
        mode, setting = os.environ.get("WANDB_MODE") or None, "WANDB_MODE"
    if mode is None:
        return "online" if has_credentials() else "offline"
    mode = _MODE_ALIASES.get(mode, mode)
    if mode not in MODES:
        accepted = (
            "online, offline, disabled, or null (WANDB_MODE, else online with an API key, else offline)"
        )
        raise ConfigError(setting, mode, accepted)
    return mode
