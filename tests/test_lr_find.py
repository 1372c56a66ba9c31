"""The learning-rate range test: its suggestion on the digits MLP lies where a short run reaches the target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainspeed.job import run_job
from trainspeed.lr_find import find_lr

QUIET = ["trainer.enable_progress_bar=false", "logger=csv", "run_test=false"]


@pytest.mark.slow
def test_suggested_lr_reaches_the_target_in_a_short_run(make_config):
    cfg = make_config("optimizer=momentum", *QUIET)
    run_dir = Path(cfg.hydra.runtime.output_dir)
    result = find_lr(cfg, run_dir)
    lr = result["suggested_lr"]
    assert 1e-6 < lr < 1.0
    assert (run_dir / "lr_find.png").stat().st_size > 0
    assert json.loads((run_dir / "lr_find.json").read_text())["suggested_lr"] == lr
    cfg = make_config(
        "optimizer=momentum", f"optimizer.lr={lr}", "trainer.max_epochs=10", "target.stop=true", *QUIET
    )
    summary = run_job(cfg)
    assert summary.reached_target, summary.metrics
