"""timm's pretrained weights from the local Hugging Face cache: offline unless the user allows downloads."""

from __future__ import annotations

import os
from pathlib import Path

from trainspeed.errors import ConfigError, DataError


def downloads_allowed() -> bool:
    """Offline unless the user sets HF_HUB_OFFLINE to a false value (0, false, no, off)."""
    return os.environ.get("HF_HUB_OFFLINE", "1").strip().lower() in ("0", "false", "no", "off")


def hub_file(name: str) -> Path:
    """timm's pretrained weights for `name` from the local Hugging Face cache (downloaded there when allowed)."""
    import timm  # timm and the hub client (~1 s to import) only for a timm model with hub weights
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    pretrained_cfg = timm.models.get_pretrained_cfg(name)
    hub_id = pretrained_cfg.hf_hub_id if pretrained_cfg is not None else None
    if not hub_id:
        examples = ", ".join(timm.list_pretrained(name.split(".")[0] + "*")[:5]) or "timm.list_pretrained()"
        raise ConfigError(
            "model.name",
            name,
            f"a timm model with weights on the Hugging Face hub ({examples})",
            problem="timm has no hub weights for it; use model.weights=FILE",
        )
    repo, _, revision = hub_id.partition("@")
    filenames = ["model.safetensors", "pytorch_model.bin"]
    if pretrained_cfg.hf_hub_filename:
        own = pretrained_cfg.hf_hub_filename
        filenames = [own[:-4] + ".safetensors", own] if own.endswith(".bin") else [own]
    for filename in filenames:
        cached = try_to_load_from_cache(repo, filename, revision=revision or None)
        if isinstance(cached, str):
            return Path(cached)
    if not downloads_allowed():
        raise DataError(
            f"model.pretrained=true: timm's weights for {name!r} ({repo}) are not in the local Hugging Face cache "
            f"({constants.HF_HUB_CACHE}) and nothing is downloaded by default; download them once with "
            f"HF_HUB_OFFLINE=0, or load a local file with model.weights=FILE"
        )
    errors = []
    for filename in filenames:
        try:
            return Path(hf_hub_download(repo, filename, revision=revision or None))
        except Exception as err:  # a missing file name or no network: try the next name, then report
            errors.append(f"{filename}: {type(err).__name__}")
    raise DataError(f"model.pretrained=true: could not download {repo} ({'; '.join(errors)})")
