"""Reproduce a run from its folder; resume a killed run and a broken sweep without losing or changing results."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from trainspeed.callbacks.checkpoint import UntimedCheckpoint
from trainspeed.record.compare import read_metrics
from trainspeed.record.run_folder import read_metrics_csv, read_metrics_rows

RUN = ["trainer.deterministic=true", "trainer.enable_progress_bar=false", "logger=csv", "seed=3"]


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _kill_when(process: subprocess.Popen, path: Path, timeout: float = 240) -> None:
    """SIGKILL the process as soon as `path` exists (polling; no timing is measured)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _launch(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "offline"}
    return subprocess.Popen(
        [sys.executable, "-m", "trainspeed.train", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.mark.slow
def test_reproduce_gives_identical_metrics_and_warns_on_changed_versions(tmp_path):
    args = [*RUN, "trainer.max_epochs=3", "hydra.run.dir=original"]
    assert run_cli(["trainspeed.train", *args], cwd=tmp_path).returncode == 0
    result = run_cli(["trainspeed.reproduce", "original", "--out", "again"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "reproduced exactly" in result.stdout
    assert (tmp_path / "again" / "metrics.csv").read_text().count("\n") > 10
    assert _summary(tmp_path / "again")["overrides"][:4] == RUN

    summary = _summary(tmp_path / "original")
    summary["versions"]["torch"] = "0.0.1"
    (tmp_path / "original" / "summary.json").write_text(json.dumps(summary))
    warned = run_cli(["trainspeed.reproduce", "original", "--out", "third"], cwd=tmp_path)
    assert "torch was 0.0.1" in warned.stdout


# the process dies the moment the checkpoint of step $DIE_AT_STEP is on disk, before anything else runs: the worst
# moment for the record, since the resumed run starts after that step and never logs its metrics again
DIE_AFTER_CHECKPOINT = """
import os, runpy, sys
from trainspeed.callbacks import checkpoint
save = checkpoint.UntimedCheckpoint._save_checkpoint
def save_then_die(self, trainer, filepath):
    save(self, trainer, filepath)
    if trainer.global_step == int(os.environ["DIE_AT_STEP"]) and filepath.endswith("last.ckpt"):
        os._exit(9)
checkpoint.UntimedCheckpoint._save_checkpoint = save_then_die
sys.argv = ["trainspeed.train", *sys.argv[1:]]
runpy.run_module("trainspeed.train", run_name="__main__")
"""


def _train_until_checkpoint(step: int, args: list[str], cwd: Path) -> None:
    """Run `python -m trainspeed.train *args` and kill it right after it wrote last.ckpt at `step`."""
    env = {**os.environ, "WANDB_MODE": "offline", "DIE_AT_STEP": str(step)}
    killed = subprocess.run(
        [sys.executable, "-c", DIE_AFTER_CHECKPOINT, *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert killed.returncode == 9, killed.stderr[-3000:]


def _logged(run_dir: Path) -> list[dict[str, str]]:
    """Every row of metrics.csv, seconds aside (two runs' clocks differ)."""
    rows = read_metrics_rows(run_dir / "metrics.csv")
    return [{k: v for k, v in row.items() if "seconds" not in k} for row in rows]


def _recorded(run_dir: Path) -> dict:
    """summary.json without what differs between two runs of the same job (times, the machine's state)."""
    summary = _summary(run_dir)
    for key in ("train_seconds", "wall_seconds", "started", "ended", "git", "command", "versions"):
        summary.pop(key, None)
    if summary.get("time_to_target"):
        summary["time_to_target"].pop("seconds", None)
    return summary


# (why the moment of the kill is hard, the run's overrides, the step whose checkpoint the run dies after)
KILLED_AFTER_A_CHECKPOINT = {
    # the checkpoint of step 30 comes after step 30's validation, which reaches the target: resumed past it, the
    # run would never validate step 30 (time to target 40 instead of 30)
    "validation at the checkpoint's step": (
        [
            "trainer.max_epochs=3",
            "trainer.val_check_interval=10",
            "trainer.check_val_every_n_epoch=null",
            "target.value=0.93",
            "callbacks.resume_checkpoint.every_n_train_steps=30",
        ],
        30,
    ),
    # step 21 is inside the window of steps 21-30 that train/loss and train/acc average
    "a checkpoint inside a logging window": (
        ["trainer.max_epochs=2", "callbacks.resume_checkpoint.every_n_train_steps=7"],
        21,
    ),
    # val/acc_best is the best of every validation, those before the kill included
    "the best validation before the kill": (
        [
            "trainer.max_epochs=3",
            "trainer.val_check_interval=5",
            "trainer.check_val_every_n_epoch=null",
            "callbacks.resume_checkpoint.every_n_train_steps=10",
        ],
        30,
    ),
    # step 40 ends epoch 1 (an epoch is 20 steps) in a run bounded by steps: epoch 2 follows, in epoch 2's order
    "an epoch's end in a run bounded by steps": (
        [
            "trainer.max_steps=47",
            "trainer.max_epochs=-1",
            "callbacks.resume_checkpoint.every_n_train_steps=10",
        ],
        40,
    ),
    # nothing validates or logs a training window after the resume: the record keeps what was logged before
    "nothing logged after the resume": (
        ["trainer.max_steps=37", "callbacks.resume_checkpoint.every_n_train_steps=10"],
        30,
    ),
    # a job given run_mode=sweep by hand resumes as a sweep job (its summary.json, which says so, is not written
    # yet): the same validation every 5 steps and the stop at the target
    "run_mode given by hand": (
        ["run_mode=sweep", "trainer.max_epochs=5", "callbacks.resume_checkpoint.every_n_train_steps=10"],
        20,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(KILLED_AFTER_A_CHECKPOINT))
def test_a_run_killed_right_after_a_checkpoint_resumes_to_the_same_record(tmp_path, case):
    overrides, step = KILLED_AFTER_A_CHECKPOINT[case]
    args = [*RUN, *overrides, "run_test=false"]
    assert run_cli(["trainspeed.train", *args, "hydra.run.dir=whole"], cwd=tmp_path).returncode == 0
    _train_until_checkpoint(step, [*args, "hydra.run.dir=killed"], tmp_path)
    assert not (tmp_path / "killed" / "summary.json").exists()
    resumed = run_cli(["trainspeed.train", f"resume={tmp_path / 'killed'}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert _logged(killed) == _logged(whole)
    assert _recorded(killed) == _recorded(whole)
    assert _recorded(whole)["metrics"].keys() >= {"val/acc", "val/loss", "train/loss"}
    if case == "validation at the checkpoint's step":
        assert {"step": "29", "time_to_target/steps": "30"}.items() <= next(
            row for row in _logged(killed) if row.get("time_to_target/steps")
        ).items()  # logged at its validation's step (the index of step 30), before the checkpoint
        assert _summary(killed)["time_to_target"]["steps"] == 30


@pytest.mark.slow
def test_reproduce_reports_a_changed_run(tmp_path):
    assert (
        run_cli(
            ["trainspeed.train", *RUN, "trainer.max_epochs=1", "hydra.run.dir=a"], cwd=tmp_path
        ).returncode
        == 0
    )
    (tmp_path / "a" / ".hydra" / "overrides.yaml").write_text(
        (tmp_path / "a" / ".hydra" / "overrides.yaml").read_text().replace("seed=3", "seed=4")
    )
    result = run_cli(["trainspeed.reproduce", "a", "--out", "b"], cwd=tmp_path)
    assert result.returncode == 1 and "not reproduced" in result.stdout and "val/acc" in result.stdout


def test_killed_run_resumes_to_the_same_result(tmp_path):
    # wide layers make steps slow enough to kill mid-epoch; last.ckpt every 30 steps (an epoch is 20 steps)
    args = [
        *RUN,
        "model.width=1024",
        "model.depth=3",
        "trainer.max_epochs=5",
        "target.value=0.9",
        "callbacks.resume_checkpoint.every_n_train_steps=30",
    ]
    assert run_cli(["trainspeed.train", *args, "hydra.run.dir=whole"], cwd=tmp_path).returncode == 0
    whole = _summary(tmp_path / "whole")
    assert whole["reached_target"]

    killed = tmp_path / "killed"
    _kill_when(_launch([*args, f"hydra.run.dir={killed}"], tmp_path), killed / "checkpoints" / "last.ckpt")
    assert not (killed / "summary.json").exists()
    checkpoint = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] % 20 != 0  # mid-epoch
    clock_at_kill = next(v for k, v in checkpoint["callbacks"].items() if "TrainClock" in k)["seconds"]

    result = run_cli(["trainspeed.train", f"resume={killed}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = _summary(killed)
    assert resumed["status"] == "completed"
    assert resumed["metrics"] == whole["metrics"]
    assert resumed["steps"] == whole["steps"]
    assert resumed["time_to_target"]["steps"] == whole["time_to_target"]["steps"]
    assert resumed["train_seconds"] > clock_at_kill > 0  # the clock kept counting from the checkpoint
    rows = (killed / "metrics.csv").read_text().splitlines()
    assert len(rows) == len((tmp_path / "whole" / "metrics.csv").read_text().splitlines())


@pytest.mark.slow
def test_relaunched_sweep_runs_only_what_was_missing(tmp_path):
    sweep = [
        "-m",
        *RUN,
        "model.width=1024",
        "model.depth=3",
        "trainer.max_epochs=3",
        "optimizer.lr=0.001,0.002,0.003",
        "callbacks.resume_checkpoint.every_n_train_steps=25",
        "hydra.sweep.dir=sweep",
    ]
    first = _launch(sweep, tmp_path)
    _kill_when(first, tmp_path / "sweep" / "1" / "checkpoints" / "last.ckpt")
    job0 = tmp_path / "sweep" / "0" / "summary.json"
    assert job0.exists() and not (tmp_path / "sweep" / "2").exists()
    before = job0.read_bytes(), job0.stat().st_mtime_ns

    result = run_cli(["trainspeed.train", *sweep], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (job0.read_bytes(), job0.stat().st_mtime_ns) == before  # job 0 was not run again
    assert "skipping job 0" in result.stdout + result.stderr
    for job in ("1", "2"):
        assert _summary(tmp_path / "sweep" / job)["status"] == "completed"
    assert (tmp_path / "sweep" / "report.csv").read_text().count("\n") == 4  # header + 3 configurations


def test_resumed_job_continues_its_online_wandb_run(tmp_path):
    from trainspeed.tracking.wandb_logger import WandbRunLogger

    (tmp_path / "wandb" / "offline-run-20260101_000000-offline1").mkdir(parents=True)
    (tmp_path / "wandb" / "run-20260101_000100-abc123").mkdir()
    logger = WandbRunLogger(save_dir=str(tmp_path))
    assert logger.continue_previous_run() == "abc123"
    assert logger._wandb_init["id"] == "abc123" and logger._wandb_init["resume"] == "allow"
    assert WandbRunLogger(save_dir=str(tmp_path / "elsewhere")).continue_previous_run() is None


def _folder_state(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of a run folder with its bytes and modification time."""
    return {
        str(p.relative_to(run_dir)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def _bytes(run_dir: Path) -> dict[str, bytes]:
    return {name: data for name, (data, _) in _folder_state(run_dir).items()}


def _bytes_of(state: dict[str, tuple[bytes, int]]) -> dict[str, bytes]:
    return {name: data for name, (data, _) in state.items()}


@pytest.mark.slow
def test_resuming_a_finished_run_leaves_it_untouched_and_training_longer_works(tmp_path):
    run = tmp_path / "run"
    args = [*RUN[:2], "seed=3", "trainer.max_epochs=2", "logger=default", f"hydra.run.dir={run}"]
    assert run_cli(["trainspeed.train", *args], cwd=tmp_path).returncode == 0
    before = _folder_state(run)
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1

    again = run_cli(["trainspeed.train", f"resume={run}"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already finished" in again.stdout and "max_epochs=2" in again.stdout
    assert _folder_state(run) == before  # summary.json, metrics.csv, .hydra/, no second W&B run

    refused = run_cli(
        ["trainspeed.train", f"resume={run}", "trainer.max_epochs=3", "optimizer.lr=-1"], cwd=tmp_path
    )
    assert (
        refused.returncode == 2 and "optimizer.lr=-1" in refused.stderr and "left as it was" in refused.stderr
    )
    assert _folder_state(run) == before  # refused before Hydra saved the bad override in .hydra/
    missing = ["trainer.max_epochs=3", "data=mnist", f"data.root={tmp_path / 'no_data'}"]
    failed = run_cli(["trainspeed.train", f"resume={run}", *missing], cwd=tmp_path)
    assert failed.returncode == 2 and "the resume ended before it saved any training" in failed.stderr
    assert _bytes(run) == _bytes_of(before)  # the failed record, new .hydra/ and W&B files were taken back
    over = run_cli(["trainspeed.reproduce", str(run), "--out", str(run)], cwd=tmp_path)
    assert over.returncode == 2 and "--out" in over.stdout and _bytes(run) == _bytes_of(before)

    longer = run_cli(["trainspeed.train", f"resume={run}", "trainer.max_epochs=3"], cwd=tmp_path)
    assert longer.returncode == 0, longer.stderr[-2000:]
    summary = _summary(run)
    assert (summary["status"], summary["steps"], summary["epochs"]) == ("completed", 60, 3)


@pytest.mark.slow
def test_a_sweep_job_replays_and_resumes_as_a_sweep_job(tmp_path):
    # an ad-hoc sweep: it stops at the target and validates every 5 steps (not once per epoch) by default
    sweep = ["-m", *RUN, "trainer.max_epochs=15", "optimizer=adam", "hydra.sweep.dir=sweep"]
    assert run_cli(["trainspeed.train", *sweep], cwd=tmp_path).returncode == 0
    job = tmp_path / "sweep" / "0"
    original = _summary(job)
    assert original["time_to_target"]["resolution_steps"] == 5 and original["reached_target"]
    assert original["steps"] == original["time_to_target"]["steps"] < 15 * 20  # stopped at the target
    assert len(read_metrics_csv(job / "metrics.csv")["val/acc"]) == original["steps"] // 5
    assert original["run_mode"] == "sweep"

    result = run_cli(["trainspeed.reproduce", str(job), "--out", "again"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "reproduced exactly" in result.stdout and "run_mode=sweep" in result.stdout
    assert _summary(tmp_path / "again")["steps"] == original["steps"]

    resumed = run_cli(["trainspeed.train", f"resume={job}"], cwd=tmp_path)
    assert resumed.returncode == 0 and "already finished" in resumed.stdout  # the stop rule of a sweep job


@pytest.mark.slow
def test_relaunched_sweep_finishes_a_record_from_a_checkpoint_at_its_stop_condition(tmp_path):
    # job 0 stops at its target, job 1 at max_epochs; last.ckpt is written only when training ends
    sweep = [
        "-m",
        *RUN,
        "trainer.max_epochs=3",
        "target.value=0.9,0.999",
        "callbacks.resume_checkpoint.every_n_train_steps=1000",
        "hydra.sweep.dir=sweep",
    ]
    assert run_cli(["trainspeed.train", *sweep], cwd=tmp_path).returncode == 0
    jobs = [tmp_path / "sweep" / n for n in ("0", "1")]
    originals = [_summary(j) for j in jobs]
    logged = [read_metrics(j) for j in jobs]
    assert (
        originals[0]["reached_target"] and originals[0]["steps"] < 60 and not originals[1]["reached_target"]
    )
    for job in jobs:
        (job / "summary.json").unlink()  # killed after training, before the record was written

    result = run_cli(["trainspeed.train", *sweep], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for job, original, values in zip(jobs, originals, logged, strict=True):
        finished = _summary(job)
        for key in ("status", "reached_target", "steps", "epochs", "train_seconds", "time_to_target"):
            assert finished[key] == original[key], (job.name, key)
        for key in ("val/acc", "val/acc_best", "val/loss", "train/loss", "test/acc", "test/loss"):
            assert finished["metrics"][key] == original["metrics"][key], (job.name, key)
        assert read_metrics(job) == values  # metrics.csv: the same values, the test row once
        assert len(read_metrics_csv(job / "metrics.csv")["test/acc"]) == 1


@pytest.mark.slow
def test_reproducing_a_run_without_metrics_csv_says_what_was_compared(tmp_path):
    args = [*RUN[:2], "seed=3", "trainer.max_epochs=1", "logger=tensorboard", "hydra.run.dir=tb"]
    assert run_cli(["trainspeed.train", *args], cwd=tmp_path).returncode == 0
    result = run_cli(["trainspeed.reproduce", "tb", "--out", "tb2"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "reproduced exactly" not in result.stdout
    assert "not compared: per-step values" in result.stdout and "has no metrics.csv" in result.stdout
    assert "compared: summary.json" in result.stdout


@pytest.mark.parametrize(
    ("record", "says"),
    [
        (("summary.json", '{"status": "completed", "reached'), "summary.json is truncated"),
        (
            ("metrics.csv", "step,train/loss\n0,2.3\n"),
            "(it has no summary.json (killed before it was written)",
        ),
    ],
)
def test_reproduce_of_a_broken_record_says_so_in_one_line(tmp_path, record, says):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- seed=3\n")
    (run / record[0]).write_text(record[1])
    result = run_cli(["trainspeed.reproduce", str(run)], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout.strip().count("\n") == 0 and says in result.stdout  # one line, however long
    assert not (tmp_path / "outputs").exists()  # nothing was re-run


@pytest.mark.slow
def test_a_changed_sweep_is_refused_in_a_folder_that_holds_other_jobs(tmp_path):
    sweep = ["-m", *RUN, "trainer.max_steps=3", "trainer.val_check_interval=3", "hydra.sweep.dir=sweep"]
    assert run_cli(["trainspeed.train", *sweep, "optimizer.lr=0.01,0.02"], cwd=tmp_path).returncode == 0
    before = _folder_state(tmp_path / "sweep")
    for changed in ("optimizer.lr=0.03", "optimizer.lr=0.02,0.01", "optimizer.lr=0.01,0.02 seed=4,3"):
        result = run_cli(["trainspeed.train", *sweep, *changed.split()], cwd=tmp_path)
        assert result.returncode == 2, result.stderr[-2000:]
        assert "already holds job 0" in result.stderr and "nothing was changed" in result.stderr
        assert _folder_state(tmp_path / "sweep") == before  # no record, .hydra/, checkpoint or report touched
    again = run_cli(["trainspeed.train", *sweep, "optimizer.lr=0.01,0.02"], cwd=tmp_path)  # the same sweep
    assert again.returncode == 0 and again.stderr.count("skipping job") == 2


@pytest.mark.slow
def test_a_record_lost_after_training_is_finished_from_the_last_checkpoint(tmp_path):
    """last.ckpt is written where training ended (after the final validation), also when the last step is a
    multiple of the checkpoint interval: a run killed during its test or before its record is written gets the
    same record back from `resume=`, without training again."""
    run = tmp_path / "run"
    every = "callbacks.resume_checkpoint.every_n_train_steps=20"
    args = [*RUN, "model.width=32", "trainer.max_epochs=2", every, f"hydra.run.dir={run}"]  # 40 steps: 2 x 20
    assert run_cli(["trainspeed.train", *args], cwd=tmp_path).returncode == 0
    original, metrics = _summary(run), (run / "metrics.csv").read_bytes()
    (run / "summary.json").unlink()
    result = run_cli(["trainspeed.train", f"resume={run}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    again = _summary(run)
    for key in ("status", "steps", "epochs", "metrics", "reached_target", "time_to_target"):
        assert again[key] == original[key], key
    assert (run / "metrics.csv").read_bytes() == metrics


def _best_checkpoint_state(checkpoint: Path) -> dict:
    """The best-model callback's saved bookkeeping (best_model_path, best_model_score, ...) in a checkpoint."""
    callbacks = torch.load(checkpoint, map_location="cpu", weights_only=False)["callbacks"]
    return next(v for k, v in callbacks.items() if k.startswith("UntimedCheckpoint") and "'val/acc'" in k)


@pytest.mark.slow
def test_a_copied_run_folder_resumes_into_its_own_checkpoints(tmp_path):
    # an epoch is 20 steps: best.ckpt at each validation (steps 20, 40, ...), last.ckpt every 30 steps
    args = [
        *RUN,
        "trainer.max_epochs=4",
        "run_test=false",
        "callbacks.resume_checkpoint.every_n_train_steps=30",
    ]
    _train_until_checkpoint(30, [*args, "hydra.run.dir=original"], tmp_path)
    shutil.copytree(tmp_path / "original", tmp_path / "copy", symlinks=True)
    copy = tmp_path / "copy" / "checkpoints"

    # the copy's checkpoint callback takes over the best-model bookkeeping, its paths moved to the copy
    saved = _best_checkpoint_state(copy / "last.ckpt")
    assert saved["dirpath"] == str(tmp_path / "original" / "checkpoints")
    callback = UntimedCheckpoint(dirpath=copy, filename="best", monitor="val/acc", mode="max")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "dirpath has changed": nothing is dropped
        callback.load_state_dict(saved)
    assert callback.best_model_path == str(copy / "best.ckpt")
    assert callback.best_model_score == saved["best_model_score"] is not None
    assert list(callback.best_k_models) == [str(copy / "best.ckpt")]

    # resumed, the copy overwrites its own best.ckpt and last.ckpt: no best-v1.ckpt / last-v1.ckpt beside them
    _train_until_checkpoint(60, [f"resume={tmp_path / 'copy'}"], tmp_path)
    assert sorted(p.name for p in copy.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert torch.load(copy / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 60
    best = _best_checkpoint_state(copy / "last.ckpt")
    accuracies = {
        int(r["step"]) + 1: float(r["val/acc"])
        for r in read_metrics_rows(tmp_path / "copy" / "metrics.csv")
        if r.get("val/acc")
    }
    best_step = max(accuracies, key=accuracies.get)
    assert best["best_model_path"] == str(copy / "best.ckpt")
    assert float(best["best_model_score"]) == pytest.approx(max(accuracies.values()))
    assert torch.load(copy / "best.ckpt", map_location="cpu", weights_only=False)["global_step"] == best_step
    original = torch.load(tmp_path / "original" / "checkpoints" / "last.ckpt", weights_only=False)
    assert original["global_step"] == 30  # the folder it was copied from is left as it was

    # after the second kill, resume= continues from the step-60 last.ckpt, not from a stale one
    result = run_cli(["trainspeed.train", f"resume={tmp_path / 'copy'}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = _summary(tmp_path / "copy")
    assert (summary["status"], summary["steps"], summary["epochs"]) == ("completed", 80, 4)
    assert sorted(p.name for p in copy.iterdir()) == ["best.ckpt", "last.ckpt"]


@pytest.mark.slow
def test_a_relaunch_that_skips_every_job_leaves_the_sweep_byte_for_byte(tmp_path):
    # Hydra writes each job's .hydra/ (and multirun.yaml) before the job can skip itself: the re-launch with
    # another launcher setting would have left the skipped records saying they were made with it
    sweep = ["-m", *RUN, "trainer.max_epochs=1", "optimizer=sgd,adam", "hydra.sweep.dir=sweep"]
    assert run_cli(["trainspeed.train", *sweep], cwd=tmp_path).returncode == 0
    before = _bytes(tmp_path / "sweep")
    again = run_cli(["trainspeed.train", *sweep, "+hydra.job.env_set.RELAUNCHED=1"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "skipping job 1" in again.stdout + again.stderr
    after = _bytes(tmp_path / "sweep")
    assert after == before
    # one more job: the two finished ones are kept as they were, multirun.yaml is this launch's, on purpose
    more = run_cli(
        ["trainspeed.train", *sweep[:-2], "optimizer=sgd,adam,momentum", "hydra.sweep.dir=sweep"],
        cwd=tmp_path,
    )
    assert more.returncode == 0, more.stderr[-2000:]
    after = _bytes(tmp_path / "sweep")
    for job in ("0", "1"):
        assert {k: v for k, v in after.items() if k.startswith(job + "/")} == {
            k: v for k, v in before.items() if k.startswith(job + "/")
        }
    assert "momentum" in after["multirun.yaml"].decode() and "2/summary.json" in after


@pytest.mark.slow
@pytest.mark.parametrize(
    ("changed", "says"),
    [
        ("model.width=128", "its network is not this config's: network."),
        ("optimizer=sgd", "its optimizer state has no 'momentum' for this config's optimizer"),
    ],
)
def test_a_checkpoint_that_does_not_fit_the_config_is_one_line_and_the_run_is_kept(tmp_path, changed, says):
    run = tmp_path / "run"
    args = [
        *RUN,
        "trainer.max_epochs=2",
        "callbacks.resume_checkpoint.every_n_train_steps=10",
        f"hydra.run.dir={run}",
    ]
    first = run_cli(["trainspeed.train", *args, "trainer.max_steps=15"], cwd=tmp_path)  # stopped mid-run
    assert first.returncode == 0, first.stderr[-2000:]
    before = _bytes(run)
    resumed = run_cli(["trainspeed.train", f"resume={run}", "trainer.max_steps=30", changed], cwd=tmp_path)
    assert resumed.returncode == 2, resumed.stderr[-2000:]
    assert f"resume='{run}' is not valid ({says}" in resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert _bytes(run) == before  # put back as it was (no training was saved)


def test_a_record_of_a_newer_trainspeed_is_not_resumed_over(tmp_path):
    from trainspeed.errors import ConfigError
    from trainspeed.resume import resume_arguments

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- seed=3\n")
    (run / "summary.json").write_text('{"schema_version": 99, "status": "completed"}')
    with pytest.raises(ConfigError, match=r"schema_version 99; .*accepted: a run this trainspeed can read"):
        resume_arguments([f"resume={run}"])


@pytest.mark.parametrize(
    ("stop_early", "continue_with"),
    [
        (["trainer.max_steps=15"], ["trainer.max_steps=30"]),  # max_steps stops 5 steps into epoch 1
        (
            ["trainer.max_steps=30", "target.stop=true"],
            ["target.stop=false"],
        ),  # the target stops it at step 5
    ],
    ids=["max_steps", "target"],
)
def test_a_run_stopped_inside_an_epoch_resumed_to_train_longer_matches_the_run_never_stopped(
    tmp_path, stop_early, continue_with
):
    """Lightning ends the epoch a run stops in and counts it done: resumed from a checkpoint written after that,
    the run went on one epoch ahead (epoch labels, shuffling, per-epoch validation cadence) and its record differed
    from the run that was never stopped. The last checkpoint is now written at the step where training stopped."""
    from conftest import compose_config
    from hydra.core.global_hydra import GlobalHydra

    from trainspeed.job import run_job

    base = ["logger=csv", "trainer.enable_progress_bar=false", "run_test=false", "data.classes=[5,6,7,8,9]"]
    base += [
        "trainer.deterministic=true",
        "trainer.max_epochs=5",
        "trainer.val_check_interval=5",
        "target.value=0.5",
    ]

    def run(folder: str, *overrides: str, resume: bool = False):
        cfg = compose_config([*base, *overrides], tmp_path / folder)
        checkpoint = str(tmp_path / folder / "checkpoints" / "last.ckpt") if resume else None
        try:
            return run_job(cfg, resume_from=checkpoint)
        finally:
            GlobalHydra.instance().clear()

    whole = run("whole", "trainer.max_steps=30")
    assert whole.steps == 30 and whole.time_to_target.steps == 5  # 10 steps per epoch
    early = run("stopped", *stop_early)
    assert early.steps in (5, 15) and early.steps % 10  # stopped inside an epoch
    resumed = run("stopped", "trainer.max_steps=30", *continue_with, resume=True)
    assert (resumed.steps, resumed.epochs, resumed.metrics) == (whole.steps, whole.epochs, whole.metrics)

    def rows(folder: str) -> list[list[str]]:
        lines = (tmp_path / folder / "metrics.csv").read_text().splitlines()
        timed = [i for i, name in enumerate(lines[0].split(",")) if "seconds" in name]
        return [[v for i, v in enumerate(line.split(",")) if i not in timed] for line in lines]

    assert rows("stopped") == rows("whole")  # every epoch label, step and value (the training seconds aside)


def test_relative_inputs_are_read_from_where_the_run_was_launched(tmp_path):
    """`reproduce` from another folder read `data.root=mnist` from there (missing, or other data); it now re-runs in
    the folder the run was launched from. A `resume=` from another folder says where its relative paths are read."""
    from dataset_files import write_mnist

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    write_mnist(project / "mnist", n_train=200, n_test=40)
    elsewhere.mkdir()
    run = project / "runs" / "original"
    args = [*RUN, "data=mnist", "data.root=mnist", "trainer.max_epochs=1", "trainer.val_check_interval=2"]
    assert run_cli(["trainspeed.train", *args, f"hydra.run.dir={run}"], cwd=project).returncode == 0
    before = _bytes(run)
    result = run_cli(["trainspeed.reproduce", str(run), "--out", str(tmp_path / "again")], cwd=elsewhere)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"in {project}, the folder the run was launched from" in result.stdout
    assert "reproduced exactly" in result.stdout and not (elsewhere / "outputs").exists()
    resumed = run_cli(["trainspeed.train", f"resume={run}", "trainer.max_epochs=2"], cwd=elsewhere)
    assert (
        f"trainspeed: warning: {run} was launched from {project}; its relative data.root=mnist is read from "
        f"{elsewhere} now (resume from {project} to read the same files)" in resumed.stderr
    )
    assert resumed.returncode == 2 and "data.root='mnist'" in resumed.stderr  # not there: nothing trained
    assert _bytes(run) == before  # neither command changed the run's folder


def test_a_run_keeps_the_fingerprint_of_its_data_and_a_resume_or_reproduction_on_other_data_says_so(tmp_path):
    """An image changed under data.root after the run: a reproduction gave other numbers with no word on why, and a
    resume trained on, its record mixing two data sets. The record keeps the data's fingerprint; reproduce names
    the data as what differs, resume is refused and the run's folder stays as it was."""
    from dataset_files import write_image_folder
    from PIL import Image

    written = write_image_folder(tmp_path / "images", classes=("a", "b"), per_class=10, size=8, mode="L")
    run = tmp_path / "run"
    args = [
        *RUN,
        "data=imagefolder",
        "data.root=images",
        "trainer.max_steps=6",
        "trainer.val_check_interval=2",
    ]
    assert run_cli(["trainspeed.train", *args, f"hydra.run.dir={run}"], cwd=tmp_path).returncode == 0
    data = _summary(run)["inputs"]["data"]
    assert data.startswith("sha256:") and len(data) == len("sha256:") + 64
    same = run_cli(["trainspeed.reproduce", str(run), "--out", str(tmp_path / "same")], cwd=tmp_path)
    assert "reproduced exactly" in same.stdout, same.stdout[-2000:]
    assert "compared: the inputs read: data fingerprint" in same.stdout
    assert _summary(tmp_path / "same")["inputs"]["data"] == data  # the same data gives the same fingerprint

    path, _, pixels = written[0]
    Image.fromarray(255 - pixels).save(path)  # one image of twenty changed
    before = _bytes(run)
    other = run_cli(["trainspeed.reproduce", str(run), "--out", str(tmp_path / "other")], cwd=tmp_path)
    assert other.returncode == 1, other.stdout[-2000:]
    assert "the re-run read other data than the original" in other.stdout
    assert _summary(tmp_path / "other")["inputs"]["data"] not in (None, data)
    resumed = run_cli(["trainspeed.train", f"resume={run}", "trainer.max_steps=12"], cwd=tmp_path)
    assert resumed.returncode == 2, resumed.stderr[-2000:]
    assert (
        f"resume='{run}' is not valid (it was trained on other inputs than this config reads: the data: "
        f"{data[:19]} then, sha256:" in resumed.stderr
    )
    assert _bytes(run) == before  # put back as it was
