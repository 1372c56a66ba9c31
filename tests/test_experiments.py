"""Experiment presets compose in every combination, and sweeps end in records and a report."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import CONF, run_cli
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def sweep_combinations(cfg) -> list[list[str]]:
    """Every override list a preset's hydra.sweeper.params expands to (as Hydra's basic sweeper does)."""
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=False)
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    combos: list[list[str]] = [[]]
    for override in parsed:
        values = (
            list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        )
        combos = [[*c, f"{override.key_or_group}={v}"] for c in combos for v in values]
    return combos


def test_the_issue_presets_exist():
    assert set(PRESETS) >= {
        "optimizers",
        "optimizers_tuned",
        "initializers",
        "activations",
        "normalizations",
        "schedulers",
        "batch_size",
        "demo",
        "he2015",
        "glorot2010",
        "ioffe2015",
        "klambauer2017",
        "kingma2015",
    }


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_in_every_combination(make_config, preset):
    cfg = make_config(f"experiment={preset}")
    assert cfg.experiment_name == preset
    assert str(cfg.hydra.mode).endswith("MULTIRUN")
    combos = sweep_combinations(cfg)
    assert len(combos) >= 4
    for combo in combos:
        job = make_config(f"experiment={preset}", *combo)
        job_only = OmegaConf.masked_copy(job, [k for k in job if k != "hydra"])
        OmegaConf.to_container(job_only, resolve=True)  # every interpolation of the job config resolves
        assert job.trainer.max_epochs >= 1 and job.target.value > 0


def test_optimizers_tuned_is_a_log_spaced_grid_of_at_least_five(make_config):
    cfg = make_config("experiment=optimizers_tuned")
    lrs = sorted({float(c[1].split("=")[1]) for c in sweep_combinations(cfg)})
    assert len(lrs) >= 5
    ratios = {round(b / a, 6) for a, b in zip(lrs, lrs[1:], strict=False)}
    assert len(ratios) == 1 and ratios.pop() > 1


def test_initializers_preset_is_deep(make_config):
    assert make_config("experiment=initializers").model.depth >= 20


def test_batch_size_preset_scales_the_learning_rate(make_config):
    small = make_config("experiment=batch_size", "data.batch_size=16").optimizer.lr
    large = make_config("experiment=batch_size", "data.batch_size=256").optimizer.lr
    assert large == pytest.approx(16 * small)


def _rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_shrunk_optimizers_preset_runs_end_to_end(tmp_path):
    result = run_cli(
        [
            "trainspeed.train",
            "-m",
            "experiment=optimizers",
            "optimizer=sgd,adam",
            "seed=0",
            "trainer.max_epochs=4",
            "logger=csv",
            "hydra.sweep.dir=sweep",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    summaries = [json.loads((sweep / str(i) / "summary.json").read_text()) for i in range(2)]
    for summary in summaries:
        assert summary["status"] == "completed"
        if summary["reached_target"]:  # sweeps stop at the target
            assert summary["steps"] == summary["time_to_target"]["steps"]
            assert summary["time_to_target"]["resolution_steps"] == 5
            assert summary["time_to_target"]["steps"] % 5 == 0
    assert summaries[1]["reached_target"]  # adam reaches 95% on the digits within 4 epochs
    rows = _rows(sweep / "report.csv")
    assert {r["config"] for r in rows} == {"optimizer=sgd", "optimizer=adam"}
    assert (sweep / "report.html").is_file() and list((sweep / "plots").glob("*.png"))


def test_a_diverging_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    result = run_cli(
        [
            "trainspeed.train",
            "-m",
            "optimizer=sgd",
            "optimizer.lr=0.1,1000",
            "trainer.max_epochs=2",
            "logger=csv",
            "trainer.enable_progress_bar=false",
            "hydra.sweep.dir=sweep",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]  # a diverged run is a result, not a failure
    sweep = tmp_path / "sweep"
    statuses = [json.loads((sweep / str(i) / "summary.json").read_text())["status"] for i in range(2)]
    assert statuses == ["completed", "diverged"]
    rows = {r["config"]: r for r in _rows(sweep / "report.csv")}
    assert rows["optimizer.lr=1000"]["diverged"] == "1" and rows["optimizer.lr=0.1"]["diverged"] == "0"
    assert int(rows["optimizer.lr=0.1"]["rank"]) < int(rows["optimizer.lr=1000"]["rank"])
