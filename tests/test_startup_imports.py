"""Start-up imports only what the config uses: timm for a timm model, layer or optimizer, wandb for a W&B logger
(scripts/benchmark_startup.py measures the time; no timing here)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import REPO, run_script

from trainspeed.tracking.wandb_import import logs_to_wandb

# builds what a job builds before training (data, network, optimizer, trainer with its loggers and callbacks), names
# the heavy optional packages that got imported
BUILD_AND_LIST = """
import sys
from trainspeed.config_paths import compose_run_config
from trainspeed.data import build_datamodule
from trainspeed.model import build_network
from trainspeed.optim.optimizers import build_optimizer
from trainspeed.training.trainer_factory import build_trainer
cfg = compose_run_config(sys.argv[2:], sys.argv[1])
data = build_datamodule(cfg.data, cfg.seed)
network, _ = build_network(cfg, data.input_shape, data.num_classes)
build_optimizer(cfg.optimizer, network)
build_trainer(cfg)
print("loaded:", *sorted(m for m in ("timm", "wandb", "optuna", "huggingface_hub") if m in sys.modules))
"""


def loaded_after_build(tmp_path, *overrides: str) -> set[str]:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            BUILD_AND_LIST,
            str(tmp_path),
            "trainer.enable_progress_bar=false",
            *overrides,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = re.search(r"^loaded:(.*)$", result.stdout, re.MULTILINE)
    assert line, result.stdout[-2000:]
    return set(line.group(1).split())


def test_an_mlp_with_csv_logging_builds_without_timm_or_wandb(tmp_path):
    assert loaded_after_build(tmp_path, "logger=csv") == set()


@pytest.mark.slow
def test_a_swapped_in_timm_layer_imports_timm(tmp_path):
    assert "timm" in loaded_after_build(tmp_path, "logger=csv", "activation=gelu")


@pytest.mark.slow
def test_only_timms_own_optimizers_import_timm(tmp_path):
    assert loaded_after_build(tmp_path, "logger=csv", "optimizer=rmsprop") == set()
    assert "timm" in loaded_after_build(tmp_path, "logger=csv", "optimizer=lamb")


@pytest.mark.parametrize(
    ("logger", "expected"), [("default", True), ("wandb", True), ("csv", False), ("none", False)]
)
def test_wandb_is_imported_early_only_for_a_wandb_logger(make_config, logger, expected):
    assert logs_to_wandb(make_config(f"logger={logger}")) is expected


@pytest.mark.slow
def test_startup_benchmark_prints_the_figures(tmp_path):
    result = run_script("benchmark_startup.py", "--runs", "1", "--cases", "csv", cwd=tmp_path)
    figures = r"\d+\.\d\d \(\d+\.\d\d-\d+\.\d\d\)"
    assert re.search(rf"^baseline: import torch, pytorch_lightning\s+{figures}\s+1\.00$", result.stdout, re.M)
    ratio = re.search(
        rf"^one step, csv: trainer.max_steps=1 logger=csv\s+{figures}\s+(\d+\.\d\d)$", result.stdout, re.M
    )
    assert ratio and float(ratio.group(1)) > 0, result.stdout
