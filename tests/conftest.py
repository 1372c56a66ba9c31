"""Shared fixtures: compose the real Hydra config in-process, and run the CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from trainspeed.config_paths import compose_run_config, config_dir

REPO = Path(__file__).resolve().parents[1]
CONF = Path(config_dir())

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# fast, quiet defaults for tests that train
FAST = ["trainer.enable_progress_bar=false", "trainer.max_epochs=1", "run_test=false", "logger=csv"]


def compose_config(overrides: list[str], run_dir: Path) -> DictConfig:
    """The config `python -m trainspeed.train <overrides>` would run with, its output folder set to run_dir."""
    return compose_run_config(overrides, run_dir)


@pytest.fixture
def make_config(tmp_path):
    """compose_config bound to a fresh run folder under tmp_path."""
    counter = iter(range(10_000))

    def make(*overrides: str) -> DictConfig:
        run_dir = tmp_path / f"run{next(counter)}"
        run_dir.mkdir()
        return compose_config(list(overrides), run_dir)

    yield make
    GlobalHydra.instance().clear()


def run_script(name: str, *args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `scripts/<name>` with this interpreter from `cwd`; it must succeed."""
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def run_cli(
    args: list[str], cwd: Path, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m <args>` in a subprocess, as a user would from `cwd`."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )
