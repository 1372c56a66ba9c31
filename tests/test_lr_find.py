"""The learning-rate range test: its suggestion on the digits MLP lies where a short run reaches the target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

from trainspeed.errors import ConfigError
from trainspeed.job import run_job
from trainspeed.lr_find import find_lr, range_settings

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


@pytest.mark.parametrize(
    ("override", "says"),
    [
        (
            "+lr_find.max_lr=1e-7",
            "lr_find.max_lr=1e-07 is not valid; accepted: a number > lr_find.min_lr (1e-06)",
        ),
        (
            "+lr_find.max_lrr=10",
            "lr_find.max_lrr=10 is not valid (unknown key); accepted: did you mean lr_find.max_lr? the keys lr_find.max_lr",
        ),
        ("+lr_find.min_lr=0", "lr_find.min_lr=0 is not valid; accepted: a number > 0"),
    ],
)
def test_bad_range_settings_are_refused(make_config, override, says):
    with pytest.raises(ConfigError) as refused:
        range_settings(make_config(override))
    assert str(refused.value).startswith(says)


def test_a_refused_range_test_says_so_in_one_line_and_writes_nothing(tmp_path):
    result = run_cli(
        ["trainspeed.lr_find", "+lr_find.num_training=abc", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "trainspeed: error: lr_find.num_training='abc' is not valid; accepted: an integer ≥ 2"
    )
    assert not (tmp_path / "run" / "lr_find.json").exists()


def test_the_range_test_is_not_cut_short_by_max_epochs(make_config):
    # one batch per epoch and max_epochs=3: the test still sweeps the range (it used to stop after 3 steps, at
    # 1.4e-6, and suggest a rate from there)
    cfg = make_config("data.batch_size=100000", "trainer.max_epochs=3", "+lr_find.num_training=30", *QUIET)
    result = find_lr(cfg, Path(cfg.hydra.runtime.output_dir))
    assert len(result["lr"]) > 3 and result["lr"][-1] > 1e-3
