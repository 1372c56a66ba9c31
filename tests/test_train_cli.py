"""The training entry point as users run it: results, run folders, sweeps, introspection, other directories."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli

from trainspeed.job import run_job

SUMMARY_KEYS = {
    "status",
    "reached_target",
    "time_to_target",
    "metrics",
    "train_seconds",
    "wall_seconds",
    "steps",
    "epochs",
    "seed",
    "overrides",
    "device",
    "versions",
    "git",
    "error",
}


@pytest.mark.slow
def test_mlp_on_digits_reaches_093_within_15_epochs_with_adam(make_config):
    cfg = make_config(
        "optimizer=adam", "trainer.max_epochs=15", "trainer.enable_progress_bar=false", "logger=csv"
    )
    summary = run_job(cfg)
    assert summary.status == "completed"
    assert summary.metrics["val/acc_best"] >= 0.93
    assert summary.metrics["test/acc"] >= 0.9
    assert summary.epochs == 15 and summary.steps == 15 * 20  # 1257 training images / 64 per batch
    run_dir = Path(cfg.hydra.runtime.output_dir)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (
        run_dir / "checkpoints" / "best.ckpt"
    ).is_file()
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "val/loss", "val/acc", "test/acc", "lr", "time/train_seconds"} <= set(header)
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(on_disk) and on_disk["seed"] == 0
    assert on_disk["versions"]["torch"] and on_disk["device"] == "cpu"
    assert 0 < on_disk["train_seconds"] < on_disk["wall_seconds"]


@pytest.mark.parametrize(("stop", "epochs"), [("trainer.max_steps=3", 0), ("trainer.max_steps=45", 2)])
def test_the_record_counts_whole_epochs_trained(make_config, stop, epochs):
    fast = ["trainer.enable_progress_bar=false", "logger=csv", "run_test=false", "model.width=32"]
    summary = run_job(make_config(*fast, stop))
    assert (summary.steps, summary.epochs) == (int(stop.split("=")[1]), epochs)  # 20 steps per epoch


def test_seed_zero_is_a_real_seed_and_seeds_differ(make_config):
    common = [
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "logger=none",
        "run_test=false",
        "callbacks=none",
    ]
    a = run_job(make_config("seed=0", *common)).metrics
    b = run_job(make_config("seed=0", *common)).metrics
    c = run_job(make_config("seed=1", *common)).metrics
    assert a == b
    assert a != c


@pytest.mark.slow
def test_two_job_multirun_from_another_directory(tmp_path):
    """conf/ is found from any working directory; each job gets a run folder with a valid record."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_cli(
        [
            "trainspeed.train",
            "-m",
            "optimizer=sgd,nesterov",
            "trainer.max_epochs=2",
            "run_test=false",
            "trainer.enable_progress_bar=false",
            "hydra.sweep.dir=sweep",
        ],
        cwd=elsewhere,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = elsewhere / "sweep"
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "summary.json").exists())
    assert [j.name for j in jobs] == ["0", "1"]
    optimizers = []
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        assert summary["status"] == "completed" and SUMMARY_KEYS <= set(summary)
        assert summary["steps"] == 40
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        assert overrides == summary["overrides"]
        optimizers.append(yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["optimizer"]["name"])
        assert (job / "metrics.csv").is_file() and (job / "checkpoints").is_dir()
    assert optimizers == ["momentum", "nesterov"]
    assert (sweep / "report.csv").is_file()


def test_hydra_introspection_prints_the_job_config(tmp_path):
    result = run_cli(["trainspeed.train", "--cfg", "job", "optimizer=adamw"], cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    cfg = yaml.safe_load(result.stdout)
    assert cfg["optimizer"]["name"] == "adamw" and cfg["optimizer"]["weight_decay"] == 0.01
    assert cfg["model"]["family"] == "mlp" and cfg["seed"] == 0
    assert not (tmp_path / "outputs").exists()


def test_missing_data_fails_with_a_clear_message(tmp_path):
    result = run_cli(
        ["trainspeed.train", "data=mnist", f"data.root={tmp_path / 'nowhere'}"], cwd=tmp_path, timeout=120
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "data.root" in output and str(tmp_path / "nowhere") in output
    assert "Traceback" not in output


def test_wheel_ships_the_config(tmp_path):
    """A non-editable install finds conf/ inside the package."""
    build = run_cli(
        ["pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        cwd=tmp_path,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(tmp_path.glob("trainspeed-*.whl"))
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "trainspeed/conf/train.yaml" in names and "trainspeed/conf/optimizer/adam.yaml" in names
        archive.extractall(target)
    probe = run_cli(["trainspeed.config_paths"], cwd=tmp_path, env={"PYTHONPATH": str(target)})
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == str(target / "trainspeed" / "conf")
