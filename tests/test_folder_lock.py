"""One trainspeed process at a time in a run or sweep folder: a second one is refused before it writes anything, and
a process that dies, however it dies, leaves no lock behind."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli

from trainspeed.errors import ConfigError
from trainspeed.record.folder_lock import lock_folder, release_folder

RUN = ["trainer.enable_progress_bar=false", "logger=csv", "trainer.max_epochs=1", "seed=3"]

# what a training process does with its folder, in a process of its own
HOLD = """
import sys
from pathlib import Path
from trainspeed.record.folder_lock import lock_folder
lock_folder(Path(sys.argv[1]), "hydra.run.dir", "another folder")
print("locked", flush=True)
sys.stdin.read()
"""


def _files(folder: Path) -> dict[str, str]:
    """Every file of the folder with a digest of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _holder(folder: Path) -> subprocess.Popen:
    """Another process holding the folder's lock until it is killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "locked"
    return process


def _kill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def test_the_lock_is_refused_while_another_process_holds_it_and_free_once_it_dies(tmp_path):
    folder = tmp_path / "run"
    holder = _holder(folder)
    try:
        with pytest.raises(
            ConfigError, match=r"resume=.*run' is not valid \(in use by another trainspeed process\)"
        ):
            lock_folder(folder, "resume", "a run no other process is training")
    finally:
        _kill(holder)  # SIGKILL: no chance to release anything
    deadline = time.monotonic() + 10
    while True:  # the kernel drops the dead process's lock as it reaps it
        try:
            assert lock_folder(folder, "resume", "a run no other process is training")
            break
        except ConfigError:
            assert time.monotonic() < deadline, "the lock of a killed process was never released"
            time.sleep(0.05)
    assert not lock_folder(folder, "resume", "...")  # this process holds it already: taken once
    release_folder(folder)
    assert list(folder.iterdir()) == []  # no lock file in the record


def test_a_run_in_use_is_refused_and_left_as_it_was(tmp_path):
    assert run_cli(["trainspeed.train", *RUN, "hydra.run.dir=run"], cwd=tmp_path).returncode == 0
    run = tmp_path / "run"
    before = _files(run)
    holder = _holder(run)
    try:
        resumed = run_cli(["trainspeed.train", f"resume={run}", "trainer.max_epochs=2"], cwd=tmp_path)
        again = run_cli(["trainspeed.train", *RUN, "hydra.run.dir=run"], cwd=tmp_path)
    finally:
        _kill(holder)
    assert resumed.returncode == 2 and again.returncode == 2
    assert f"resume='{run}' is not valid (in use by another trainspeed process)" in resumed.stderr
    assert "was left as it was" in resumed.stderr
    assert "hydra.run.dir=" in again.stderr and "in use by another trainspeed process" in again.stderr
    assert "nothing was written" in again.stderr
    assert _files(run) == before  # no .hydra/, record or metrics.csv rewritten


def test_a_sweep_folder_in_use_is_refused_before_any_job(tmp_path):
    sweep = tmp_path / "sweep"
    holder = _holder(sweep)
    try:
        result = run_cli(
            ["trainspeed.train", "-m", *RUN, "seed=1,2", f"hydra.sweep.dir={sweep}"], cwd=tmp_path
        )
    finally:
        _kill(holder)
    assert result.returncode == 2
    assert "hydra.sweep.dir=" in result.stderr and "nothing was changed" in result.stderr
    assert list(sweep.iterdir()) == []  # no job folder, no multirun.yaml


def test_a_sweep_with_a_job_folder_in_use_is_refused_before_any_job(tmp_path):
    # job 1 of an earlier launch, resumed by hand and still running: Hydra would rewrite its .hydra/ before the
    # job could look, so the whole sweep is refused first
    args = ["trainspeed.train", "-m", *RUN, "seed=1,2", "hydra.sweep.dir=sweep"]
    assert run_cli(args, cwd=tmp_path).returncode == 0
    sweep = tmp_path / "sweep"
    before = _files(sweep)
    holder = _holder(sweep / "1")
    try:
        result = run_cli(args, cwd=tmp_path)
    finally:
        _kill(holder)
    assert result.returncode == 2
    assert "holds job folders in use by another trainspeed process" in result.stderr
    assert "process: sweep/1;" in result.stderr and "nothing was changed" in result.stderr
    assert _files(sweep) == before


def test_the_job_folder_lock_refuses_a_job_whose_folder_is_in_use(tmp_path, monkeypatch):
    """The job's own lock, behind the sweep's check (a resume of the job started after the sweep did)."""
    from trainspeed.train import JOB_IN_USE

    job = tmp_path / "sweep" / "1"
    holder = _holder(job)
    try:
        with pytest.raises(ConfigError, match=r"hydra.runtime.output_dir=.*is not valid \(in use by another"):
            lock_folder(job, "hydra.runtime.output_dir", JOB_IN_USE)
    finally:
        _kill(holder)


def test_a_job_of_a_sweep_still_running_is_not_resumed_by_hand(tmp_path):
    # the sweep would rewrite the job's .hydra/ when it got to the job, whatever the job's own lock then says
    launch = ["trainspeed.train", "-m", *RUN, "seed=1,2", "hydra.sweep.dir=sweep"]
    assert run_cli(launch, cwd=tmp_path).returncode == 0
    sweep = tmp_path / "sweep"
    before = _files(sweep)
    holder = _holder(sweep)  # a re-launch of the sweep, still running
    try:
        resumed = run_cli(["trainspeed.train", f"resume={sweep / '1'}", "trainer.max_epochs=2"], cwd=tmp_path)
    finally:
        _kill(holder)
    assert resumed.returncode == 2
    assert f"resume='{sweep / '1'}' is not valid (its sweep {sweep} is still running)" in resumed.stderr
    assert "was left as it was" in resumed.stderr
    assert _files(sweep) == before
    again = run_cli(["trainspeed.train", f"resume={sweep / '1'}", "trainer.max_epochs=2"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr  # once the sweep has ended
    assert _files(sweep) != before


def test_a_new_run_into_a_folder_holding_a_run_is_refused_and_left_as_it_was(tmp_path):
    first = run_cli(["trainspeed.train", *RUN, "hydra.run.dir=run"], cwd=tmp_path)
    assert first.returncode == 0
    run = tmp_path / "run"
    # the run's last line: its result, as its record has it, and where that record is
    summary = json.loads((run / "summary.json").read_text())
    best, test_acc = summary["metrics"]["val/acc_best"], summary["metrics"]["test/acc"]
    assert not summary["reached_target"] and 0.5 < best < 0.95 and isinstance(test_acc, float)
    assert first.stdout.strip().splitlines()[-1] == (
        f"trainspeed: completed, target not reached (best val/acc {best:.4g}); test/acc {test_acc:.4g}; "
        f"record in {run}"
    )
    before = _files(run)
    again = run_cli(["trainspeed.train", *RUN, "optimizer=sgd", "hydra.run.dir=run"], cwd=tmp_path)
    assert again.returncode == 2
    assert (
        "hydra.run.dir='run' is not valid (it already holds a run); accepted: a new folder, or resume=run"
        in (again.stderr)
    )
    assert "nothing was written" in again.stderr
    assert _files(run) == before  # the first run's record, .hydra/ and checkpoints as they were


def test_a_run_into_a_sweep_folder_and_a_sweep_into_a_run_folder_are_refused(tmp_path):
    sweep, run = tmp_path / "sweep", tmp_path / "run"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    (run / ".hydra").mkdir(parents=True)
    (run / "summary.json").write_text("{}")
    before = _files(tmp_path)
    into_sweep = run_cli(["trainspeed.train", *RUN, f"hydra.run.dir={sweep}"], cwd=tmp_path)
    into_run = run_cli(["trainspeed.train", "-m", *RUN, "seed=1,2", f"hydra.sweep.dir={run}"], cwd=tmp_path)
    assert into_sweep.returncode == 2 and "is not valid (it already holds a sweep)" in into_sweep.stderr
    assert "resume=" not in into_sweep.stderr  # a sweep folder is not a run to resume
    assert into_run.returncode == 2 and "is not valid (it holds a run)" in into_run.stderr
    assert _files(tmp_path) == before


def test_a_file_where_the_folder_should_be_is_one_line(tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    sweep = run_cli(["trainspeed.train", "-m", *RUN, "hydra.sweep.dir=taken"], cwd=tmp_path)
    run = run_cli(["trainspeed.train", *RUN, "hydra.run.dir=taken/run"], cwd=tmp_path)
    for result, key in ((sweep, "hydra.sweep.dir="), (run, "hydra.run.dir=")):
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert (
            key in result.stderr
            and "taken" in result.stderr
            and "is not valid (a file is in the way)" in (result.stderr)
        )
    assert (tmp_path / "taken").read_text() == "not a folder"


def test_resume_given_to_a_sweep_is_one_line_and_leaves_the_run_as_it_was(tmp_path):
    """`-m resume=RUN seed=1,2` was argparse's usage text (the expanded overrides reached Hydra's parser)."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- seed=3\n")
    (run / "summary.json").write_text('{"status": "failed"}')
    before = _files(tmp_path)
    result = run_cli(["trainspeed.train", "-m", "resume=run", "seed=1,2"], cwd=tmp_path)
    assert result.returncode == 2 and "usage:" not in result.stderr
    assert (
        "/run' is not valid (given to a sweep (-m)); accepted: resume= without -m to continue one run; "
        "a sweep continues when launched again with the same command and hydra.sweep.dir" in result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1
    assert _files(tmp_path) == before
