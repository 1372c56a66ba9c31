"""The optimizer name check: timm's list for the pinned timm version, else timm itself."""

from __future__ import annotations

from functools import cache
from importlib import metadata

from trainspeed.errors import unknown_name
from trainspeed.options import TIMM_OPTIMIZERS, TIMM_OPTIMIZERS_VERSION


@cache
def _timm_version() -> str | None:
    try:
        return metadata.version("timm")
    except metadata.PackageNotFoundError:
        return None


def check_optimizer_name(name: str) -> None:
    """Refuse an optimizer name timm does not know, suggesting the closest names.

    With the timm version trainspeed.options lists them for, the list is authoritative; with another version a name
    missing from it is looked up in timm itself (imported only then).
    """
    if name in TIMM_OPTIMIZERS:
        return
    known: frozenset[str] | list[str] = TIMM_OPTIMIZERS
    if _timm_version() != TIMM_OPTIMIZERS_VERSION:
        from timm.optim import list_optimizers

        known = list_optimizers()
        if name in known:
            return
    raise unknown_name("optimizer.name", name, known)
