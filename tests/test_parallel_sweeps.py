"""Sweeps on Hydra's joblib and submitit launchers: the same records, W&B runs and single report as the basic
launcher, the failing-job exit code, per-job threads, and DDP jobs through submitit (one process per device)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

WANDB_CLI = shutil.which("wandb", path=str(Path(sys.executable).parent)) or shutil.which("wandb")
QUICK = ["trainer.max_epochs=1", "run_test=false", "trainer.enable_progress_bar=false"]


def _summaries(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("[0-9]*/summary.json"))]


def _wandb_runs(sweep: Path) -> list[Path]:
    return sorted(sweep.glob("[0-9]*/wandb/offline-run-*"))


def _run_name(run_dir: Path) -> str:
    """The W&B run's display name, from its .wandb file (W&B's own reader)."""
    out = subprocess.run([WANDB_CLI, "leet", "inspect", "--json", str(run_dir)], capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    records = (json.loads(line) for line in out.stdout.splitlines())
    return next(record["run"]["display_name"] for record in records if record["type"] == "run")


@pytest.mark.slow
def test_joblib_sweep_gives_every_record_run_and_one_report(tmp_path):
    args = ["trainspeed.train", "-m", "optimizer=sgd,adam", "seed=0,1", *QUICK]
    args += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweep.dir=sweep"]
    result = run_cli(args, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    summaries = _summaries(sweep)
    assert [s["status"] for s in summaries] == ["completed"] * 4
    assert sorted(s["seed"] for s in summaries) == [0, 0, 1, 1]
    assert len(_wandb_runs(sweep)) == 4  # one W&B run per job, in its folder
    assert result.stdout.count("report: ") == 1  # written once, by the launching process, at the end
    rows = (sweep / "report.csv").read_text().splitlines()
    assert len(rows) == 3 and (sweep / "report.html").is_file()
    # each of the 2 concurrent jobs limits torch to cores / 2 threads (at least 1)
    logs = [(sweep / str(i) / "train.log").read_text() for i in range(4)]
    assert all("parallel sweep job: threads=" in text for text in logs)


@pytest.mark.slow
def test_joblib_sweep_with_a_failing_job_exits_1_after_its_report(tmp_path):
    args = ["trainspeed.train", "-m", "model.depth=1,0", *QUICK, "logger=csv"]
    args += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweep.dir=sweep"]
    result = run_cli(args, cwd=tmp_path, timeout=900)
    assert result.returncode == 1, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    assert sorted(s["status"] for s in _summaries(sweep)) == ["completed", "failed"]
    assert (sweep / "report.md").is_file()


@pytest.mark.slow
def test_submitit_local_sweep_gives_every_record_run_and_one_report(tmp_path):
    args = ["trainspeed.train", "-m", "optimizer=sgd,adam", *QUICK]
    args += ["hydra/launcher=submitit_local", "hydra.sweep.dir=sweep"]
    result = run_cli(args, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    assert [s["status"] for s in _summaries(sweep)] == ["completed"] * 2
    assert len(_wandb_runs(sweep)) == 2
    # each run is named by what the sweep varies, though a submitit job's command line is submitit's own
    assert [_run_name(run) for run in _wandb_runs(sweep)] == ["optimizer=sgd", "optimizer=adam"]
    assert result.stdout.count("report: ") == 1
    assert len((sweep / "report.csv").read_text().splitlines()) == 3


def test_submitit_sweep_with_refused_jobs_says_why_and_where_their_output_is(tmp_path):
    """Under submitit a job's refusal is printed in its own process: the sweep's last message repeats each
    failed job's error and says where that process's output went."""
    args = ["trainspeed.train", "-m", "optimizer.lr=-1,0", "logger=csv"]
    args += ["hydra/launcher=submitit_local", "hydra.sweep.dir=sweep"]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    console = result.stdout + result.stderr
    assert "job 0 failed" not in console  # the refusal itself went to the job process's output
    message = console[console.index("2 job(s) failed:") :].splitlines()
    assert (
        message[1] == "  sweep/0: failed: ConfigError: optimizer.lr=-1 is not valid; accepted: a number > 0"
    )
    assert message[2] == "  sweep/1: failed: ConfigError: optimizer.lr=0 is not valid; accepted: a number > 0"
    assert "sweep/.submitit/<job id>/<job id>_<task>_log.out and .err" in message[3]
    refusals = [p.read_text() for p in (tmp_path / "sweep").glob(".submitit/*/*_log.err")]
    assert sum("job 0 failed: optimizer.lr=-1 is not valid" in text for text in refusals) == 1


@pytest.mark.slow
def test_ddp_cpu_runs_as_one_submitit_job_with_one_process_per_device(tmp_path):
    args = ["trainspeed.train", "-m", "trainer=ddp_cpu", *QUICK, "logger=csv"]
    args += ["hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2", "hydra.sweep.dir=sweep"]
    result = run_cli(args, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    summaries = _summaries(sweep)
    assert len(summaries) == 1 and summaries[0]["status"] == "completed"
    # each process's output: submitit's logs, and the job's own log file where the sweep console sends it
    logs = "".join(p.read_text() for p in [*sweep.glob(".submitit/*/*_log.*"), *sweep.glob("*/*.log")])
    assert "MEMBER: 1/2" in logs and "MEMBER: 2/2" in logs  # two processes joined one process group
    # the digits' training split sharded over 2 processes: half the steps of one process per epoch
    assert summaries[0]["steps"] == 10


def test_ddp_in_a_sweep_on_the_basic_launcher_is_refused_with_how(tmp_path):
    result = run_cli(
        ["trainspeed.train", "-m", "trainer=ddp_cpu", "logger=csv", "hydra.sweep.dir=s"], tmp_path
    )
    assert result.returncode == 1
    assert "hydra/launcher=submitit_local" in result.stderr and "tasks_per_node" in result.stderr
    summary = json.loads((tmp_path / "s" / "0" / "summary.json").read_text())
    assert summary["status"] == "failed" and "trainer.strategy" in summary["error"]


def test_slurm_launcher_config_becomes_the_sbatch_script(make_config, tmp_path, monkeypatch):
    """What can be checked without a cluster: the sbatch script submitit writes from hydra/launcher=slurm."""
    srun = tmp_path / "bin" / "srun"  # submitit only looks for srun on the PATH; nothing is submitted
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\nexit 1\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}:{os.environ['PATH']}")
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    cfg = make_config("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=4",
                      "hydra.launcher.tasks_per_node=4", "hydra.launcher.nodes=2", "hydra.launcher.timeout_min=30")  # fmt: skip
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    for key in ("_target_", "submitit_folder", "max_num_timeout", "name"):
        params.pop(key)
    base = set(OmegaConf.structured(BaseQueueConf).keys())  # the same renaming as Hydra's SlurmLauncher
    executor = submitit.AutoExecutor(cluster="slurm", folder=tmp_path / "submitit")
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -m trainspeed.train", "uid")
    for line in ("--partition=gpu", "--gpus-per-node=4", "--ntasks-per-node=4", "--nodes=2", "--time=30",
                 "--cpus-per-task=8", "--mem=32GB"):  # fmt: skip
        assert f"#SBATCH {line}" in script, script
