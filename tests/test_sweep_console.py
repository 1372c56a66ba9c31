"""A sweep's console: one line per job as it ends, over a progress bar; the library chatter in each job's log."""

from __future__ import annotations

import re

import pytest
from conftest import run_cli
from omegaconf import OmegaConf

from trainspeed.record.summary import Summary, TimeToTargetRecord
from trainspeed.sweep_console import AXES_ENV, BASIC_SWEEPER, outcome, sweep_axes, sweep_plan
from trainspeed.tracking.naming import job_overrides, run_name, swept_keys


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two jobs with the default loggers (CSV + W&B offline) and progress bars; job 1 asks for cudnn benchmark
    with deterministic algorithms, which Lightning warns about: that warning must stay on the console."""
    cwd = tmp_path_factory.mktemp("console")
    args = [
        "trainspeed.train",
        "-m",
        "trainer.benchmark=false,true",
        "trainer.deterministic=true",
        "trainer.max_epochs=1",
        "run_test=false",
    ]
    result = run_cli([*args, f"hydra.sweep.dir={cwd / 'sweep'}"], cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, cwd / "sweep"


@pytest.mark.slow
def test_each_job_prints_one_line_with_the_progress_and_its_outcome(sweep):
    result, _ = sweep
    lines = [line for line in result.stdout.splitlines() if re.search(r"\bjob \d\b", line)]
    assert len(lines) == 2, result.stdout
    assert re.match(r"^━+\s+1/2  job 0  trainer\.benchmark=False  completed, ", lines[0]), lines[0]
    assert re.match(r"^━+\s+2/2  job 1  trainer\.benchmark=True  completed, ", lines[1]), lines[1]
    assert "best val/acc" in lines[0] or "target in" in lines[0]
    assert "time to target" in result.stdout and "report:" in result.stdout  # the ranking at the end
    assert "#0 : " not in result.stdout  # no launcher line before each job


@pytest.mark.slow
def test_library_chatter_goes_to_each_jobs_log_and_warnings_stay_visible(sweep):
    result, sweep_dir = sweep
    console = result.stdout + result.stderr
    for chatter in (
        "GPU available",
        "wandb: ",
        "Loading `train_dataloader`",
        "Epoch 0",
        "W&B run saved offline",
    ):
        assert chatter not in console, chatter
        assert chatter in (sweep_dir / "0" / "train.log").read_text(), chatter
    warned = [line for line in console.splitlines() if "`deterministic=True` and `benchmark=True`" in line]
    assert len(warned) == 1, console  # the warning raised inside job 1 is still shown


def _summary(status: str, reached: bool = False, error: str | None = None, **fields) -> Summary:
    return Summary(
        status=status,
        reached_target=reached,
        time_to_target=TimeToTargetRecord(metric="val/acc", target=0.95, **fields.pop("ttt", {})),
        metrics=fields.pop("metrics", {}),
        error=error,
        **_budget_stop(*fields.pop("budget", (None, None))),
    )


def _budget_stop(train_seconds: float | None, budget: float | None) -> dict:
    if budget is None:
        return {}
    return {"train_seconds": train_seconds, "stopped_by": "budget", "budget_seconds": budget}


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        (
            _summary("completed", True, ttt={"seconds": 0.41234, "steps": 85}),
            "completed, target in 0.4123 s (85 steps)",
        ),
        (
            _summary("completed", metrics={"val/acc": 0.9, "val/acc_best": 0.93}),
            "completed, target not reached (best val/acc 0.93)",
        ),
        (
            _summary("completed", metrics={"val/acc_best": 0.91}, budget=(3.21, 2.5)),
            "pruned (training seconds 3.21 over the budget 2.5 s; best val/acc 0.91)",
        ),
        (
            _summary("completed", metrics={"train/loss": 0.3, "val/acc_best": None}),
            "completed without a validation (no time to target)",
        ),
        (_summary("diverged", error="loss is nan\nat step 40"), "diverged: loss is nan at step 40"),
        (None, "no record"),
    ],
)
def test_outcome_words(summary, expected):
    assert outcome(summary) == expected


def test_the_job_count_and_axes_of_a_preset_and_the_command_line():
    config = OmegaConf.create(
        {
            "hydra": {
                "sweeper": {
                    "_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                    "params": {"optimizer": "sgd,adam,lion", "seed": "0,1"},
                },
                "overrides": {"task": ["experiment=optimizers", "optimizer.lr=0.1,0.01"]},
            }
        }
    )
    assert sweep_plan(config) == (12, ["optimizer", "seed", "optimizer.lr"])


def test_a_job_process_without_the_sweeps_environment_reads_its_axes_from_the_sweep_folder(
    tmp_path, monkeypatch
):
    """A job process that did not inherit the launching process's environment (a SLURM job submitted with
    --export=NONE) finds the axes in `multirun.yaml`, the sweep's config that Hydra saves in the sweep folder;
    its W&B run is named by them."""
    from conftest import compose_config
    from hydra.core.hydra_config import HydraConfig

    sweep = {"sweeper": {"_target_": BASIC_SWEEPER, "params": None},
             "overrides": {"task": ["optimizer=sgd,adam", "seed=0,1", "trainer.max_epochs=1"]}}  # fmt: skip
    OmegaConf.save({"hydra": sweep}, tmp_path / "multirun.yaml")
    monkeypatch.delenv(AXES_ENV, raising=False)
    try:  # the job's config, as Hydra sets it in job 1's process
        compose_config(["optimizer=adam", "seed=1", "trainer.max_epochs=1", "hydra.mode=MULTIRUN",
                        f"hydra.sweep.dir={tmp_path}"], tmp_path / "1")  # fmt: skip
        assert sweep_axes() == ["optimizer", "seed"]
        assert run_name(job_overrides(), swept_keys()) == "optimizer=adam,seed=1"
        monkeypatch.setenv(AXES_ENV, "seed")  # what the launching process said wins
        assert run_name(job_overrides(), swept_keys()) == "seed=1"
    finally:
        HydraConfig.instance().cfg = None
