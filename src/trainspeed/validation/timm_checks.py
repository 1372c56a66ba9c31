"""Checks of a timm backbone against the data: its name, the smallest input it takes, groupnorm widths.

timm (and with it torch) is imported only here, only when the model is a timm model. The network is built on the
`meta` device: no memory is allocated and no weights are loaded, so probing input sizes costs little.
"""

from __future__ import annotations

import math
from typing import Any

from trainspeed.errors import ConfigError, unknown_name
from trainspeed.validation.rules import divisors


def _fits(network: Any, channels: int, side: int) -> bool:
    import torch

    try:
        with torch.no_grad():
            network(torch.empty((1, channels, side, side), device="meta"))
    except Exception:  # too small: a kernel larger than the map, an empty pooled map, a fixed patch grid...
        return False
    return True


def smallest_input(network: Any, channels: int, low: int, high: int) -> int:
    """The smallest side in (low, high] the network takes, given that it refuses `low` and takes `high`."""
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if _fits(network, channels, mid) else (mid, high)
    return high


def _patch_size(network: Any) -> int | None:
    """The side of a vision transformer's patches (timm's PatchEmbed), None for other networks."""
    size = getattr(getattr(network, "patch_embed", None), "patch_size", None)
    if isinstance(size, int):
        return size
    return max(size) if isinstance(size, tuple | list) and size else None


def _builds_for(name: str, kwargs: dict[str, Any], channels: int, side: int) -> bool:
    """Whether timm builds `name` with `kwargs` (on the meta device) and the result takes side x side images."""
    import timm
    import torch

    try:
        with torch.device("meta"):
            network = timm.create_model(name, pretrained=False, num_classes=2, in_chans=channels, **kwargs)
    except Exception:
        return False
    return _fits(network.eval(), channels, side)


def _patch_too_large(
    name: str, kwargs: dict[str, Any], channels: int, side: int, patch: int, default_side: int
) -> ConfigError:
    """The images are smaller than one patch: say so, with the fixes that build (each probed on `meta`)."""
    fixes = []
    divisors_of_side = [p for p in range(min(patch - 1, side // 2), 0, -1) if side % p == 0]
    # the largest patch that still leaves a 4x4 grid (else 2x2): few tokens, but more than one
    smaller = [p for p in divisors_of_side if side // p >= 4] or divisors_of_side
    for p in smaller:
        if _builds_for(name, {**kwargs, "img_size": side, "patch_size": p}, channels, side):
            grid = f"{side // p}x{side // p}"
            fixes.append(
                f"+model.kwargs.img_size={side} +model.kwargs.patch_size={p} (a {grid} grid of patches)"
            )
            break
    if "img_size" in kwargs and _builds_for(name, {**kwargs, "img_size": patch * 2}, channels, patch * 2):
        fixes.append(f"data.image_size={patch * 2} +model.kwargs.img_size={patch * 2}")
    elif "img_size" not in kwargs:
        fixes.append(f"data.image_size={default_side} (its input size)")
    return ConfigError(
        "data.image_size",
        side,
        " or ".join(fixes) or f"data.image_size ≥ {patch}",
        problem=f"timm model {name!r} cuts images into {patch}x{patch} patches, larger than the {side}x{side} images",
    )


def _norm_widths(network: Any) -> list[int]:
    import torch.nn as nn

    widths = []
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase):
            widths.append(module.num_features)
        elif isinstance(module, nn.GroupNorm):
            widths.append(module.num_channels)
        elif isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
            widths.append(module.normalized_shape[0])
    return widths


def check_timm_model(
    model: dict[str, Any], norm: dict[str, Any], image: tuple[int | None, int | None]
) -> None:
    """Refuse an unknown timm model name, images smaller than the backbone takes, and groupnorm group counts
    that do not divide the backbone's normalized widths."""
    import timm
    import torch

    name = model.get("name")
    if not timm.is_model(name):
        raise unknown_name("model.name", name, timm.list_models())
    channels, side = image
    channels = channels or 3
    try:
        with torch.device("meta"):
            network = timm.create_model(name, pretrained=False, num_classes=2, in_chans=channels,
                                        **(model.get("kwargs") or {}))  # fmt: skip
    except Exception:  # arguments timm refuses: the build reports them with timm's own message
        return
    network.eval()
    cfg = getattr(network, "pretrained_cfg", None) or {}
    default_side = int(cfg.get("input_size", (3, 224, 224))[-1])
    patch = _patch_size(network)
    if side is not None and patch is not None and patch > side and not _fits(network, channels, side):
        raise _patch_too_large(name, model.get("kwargs") or {}, channels, side, patch, default_side)
    if side is not None and not _fits(network, channels, side) and _fits(network, channels, default_side):
        fixed = bool(cfg.get("fixed_input_size")) and "img_size" not in (model.get("kwargs") or {})
        if side < default_side:
            need = smallest_input(network, channels, side, default_side)
            accepted = f"data.image_size={need}" if fixed else f"data.image_size ≥ {need}"
        else:
            need, accepted = default_side, f"data.image_size={default_side}"
        if fixed:
            accepted += f" (its fixed input size), or +model.kwargs.img_size={side} to build it for {side}"
        raise ConfigError(
            "data.image_size",
            side,
            accepted,
            problem=f"timm model {name!r} does not take {side}x{side} images",
        )
    if norm.get("name") == "groupnorm":
        widths = _norm_widths(network)
        groups = norm.get("num_groups")
        if widths and any(w % groups for w in widths):
            gcd = math.gcd(*widths)
            raise ConfigError(
                "normalization.num_groups",
                groups,
                f"a divisor of every normalized width of {name} (gcd {gcd}): "
                + ", ".join(map(str, divisors(gcd))),
            )
