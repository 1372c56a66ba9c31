"""What a run needs to be reproduced: package versions, the git commit, the command line."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "trainspeed",
    "torch",
    "torchvision",
    "pytorch-lightning",
    "hydra-core",
    "omegaconf",
    "timm",
    "torchmetrics",
    "wandb",
    "numpy",
    "scikit-learn",
)


def package_versions() -> dict[str, str | None]:
    """Python and the versions of the packages that decide a run's numbers."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(path: str | Path | None = None) -> dict[str, object]:
    """The commit of the repository holding `path` (default: this package) and whether its tree was dirty."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def command_line() -> list[str]:
    """The command as typed (python -m trainspeed.train ...)."""
    script = Path(sys.argv[0])
    if script.parent.name == "trainspeed" and script.suffix == ".py":  # run with python -m
        return ["python", "-m", f"trainspeed.{script.stem}", *sys.argv[1:]]
    return [script.name, *sys.argv[1:]]
