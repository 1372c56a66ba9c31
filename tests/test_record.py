"""The run record's one shape: summary.json round-trips byte for byte, unreadable files give one line, files get
the usual permissions, and run-vs-sweep defaults are resolved in one place."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
import torch

from trainspeed.record.atomic import write_atomic
from trainspeed.record.resumable_csv import ResumableCSVLogger
from trainspeed.record.run_folder import read_metrics_rows
from trainspeed.record.summary import (
    SCHEMA_VERSION,
    RecordError,
    Summary,
    build_summary,
    read_summary,
    write_summary,
)
from trainspeed.resume import resume_arguments
from trainspeed.run_mode import SWEEP_VAL_CHECK_STEPS, resolve_run_mode, stop_reason


def _summary(**changes) -> Summary:
    fields = dict(
        status="completed",
        time_to_target={
            "seconds": 1.23456,
            "steps": 80,
            "epochs": 4.0,
            "samples": 5028,
            "resolution_steps": 5,
        },
        target={"metric": "val/acc", "value": 0.95},
        metrics={"val/acc": 0.974074, "val/acc_best": 0.974074, "test/acc": 0.97037, "train/loss": 1e-07},
        train_seconds=5.11123,
        wall_seconds=6.2,
        steps=300,
        epochs=15,
        seed=0,
        overrides=["logger=csv", "optimizer.lr=0.1"],
        device="cpu",
        run_mode="sweep",
        compile_seconds=0.5,
    )
    return build_summary(**{**fields, **changes})


def test_summary_round_trips_byte_for_byte(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    write_summary(first, _summary())
    read = read_summary(first)
    write_summary(second, read)
    assert (first / "summary.json").read_bytes() == (second / "summary.json").read_bytes()
    on_disk = json.loads((first / "summary.json").read_text())
    assert on_disk["schema_version"] == SCHEMA_VERSION and list(on_disk)[0] == "schema_version"
    assert on_disk["time_to_target"]["resolution_steps"] == 5 and on_disk["compile_seconds"] == 0.5
    assert read.run_mode == "sweep" and read.time_to_target.steps == 80 and read.done


def test_unreached_target_still_states_the_resolution(tmp_path):
    summary = _summary(time_to_target=None, resolution_steps=20)
    assert not summary.reached_target
    assert summary.time_to_target.resolution_steps == 20 and summary.time_to_target.seconds is None


def test_written_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_summary(tmp_path, _summary())
        write_atomic(tmp_path / "report.md", "text")
    finally:
        os.umask(old)
    for name in ("summary.json", "report.md"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "summary.json"]  # no temporary left


def test_a_record_without_schema_version_is_read_as_version_1(tmp_path):
    data = _summary().model_dump(mode="json")
    for key in ("schema_version", "run_mode", "compile_seconds"):
        data.pop(key)
    (tmp_path / "summary.json").write_text(json.dumps(data))
    summary = read_summary(tmp_path)
    assert (
        summary.status == "completed" and summary.run_mode is None and summary.metrics["test/acc"] == 0.97037
    )


def test_a_version_2_record_is_read_without_a_budget_stop(tmp_path):
    data = _summary().model_dump(mode="json")
    for key in ("stopped_by", "budget_seconds"):
        data.pop(key)
    (tmp_path / "summary.json").write_text(json.dumps({**data, "schema_version": 2}))
    summary = read_summary(tmp_path)
    assert (summary.schema_version, summary.stopped_by, summary.budget_seconds) == (
        SCHEMA_VERSION,
        None,
        None,
    )
    assert summary.status == "completed"


def test_a_version_3_record_is_read_without_input_fingerprints_and_reproduce_says_the_data_was_not_compared(
    tmp_path,
):
    from trainspeed.record.compare import compare_runs

    data = _summary(inputs={"data": "sha256:" + "a" * 64}).model_dump(mode="json")
    assert data["inputs"] == {"data": "sha256:" + "a" * 64, "weights": None}
    old, new = tmp_path / "old", tmp_path / "new"
    write_summary(new, Summary.model_validate(data))
    data.pop("inputs")
    old.mkdir()
    (old / "summary.json").write_text(json.dumps({**data, "schema_version": 3}))
    summary = read_summary(old)
    assert (summary.inputs.data, summary.inputs.weights) == (None, None)
    comparison = compare_runs(old, new)
    assert comparison.differences == []
    assert "the data read: the original record has no fingerprint of it (before version 4)" in (
        comparison.not_compared
    )


def test_input_fingerprints_name_what_changed():
    from types import SimpleNamespace

    from trainspeed.record.inputs import data_fingerprint, file_fingerprint, input_changes

    x, y = torch.arange(24, dtype=torch.float32).reshape(6, 1, 2, 2), torch.tensor([0, 1, 0, 1, 0, 1])

    def splits(x, y, names=("a", "b")):
        return SimpleNamespace(
            class_names=names, train=(x[:4], y[:4]), val=(x[4:5], y[4:5]), test=(x[5:], y[5:])
        )

    base = data_fingerprint(splits(x, y))
    assert base == data_fingerprint(splits(x.clone(), y.clone()))
    changed = x.clone()
    changed[5, 0, 1, 1] += 1e-6  # one value of the test split
    others = [
        splits(changed, y),
        splits(x, 1 - y),
        splits(x, y, ("a", "c")),
        splits(x.reshape(6, 1, 4, 1), y),
    ]
    assert len({base, *map(data_fingerprint, others)}) == 5
    assert (
        input_changes({"data": base, "weights": None}, {"data": base, "weights": "sha256:" + "1" * 64}) == []
    )
    assert input_changes({"data": base}, {"data": data_fingerprint(others[0])}) == [
        f"the data: {base[:19]} then, {data_fingerprint(others[0])[:19]} now"
    ]
    file = Path(__file__)
    assert file_fingerprint(file) == "sha256:" + hashlib.sha256(file.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (None, "truncated or not JSON"),  # the first half of a real record
        ('{"schema_version": 99, "status": "completed"}', "schema_version 99"),
        ('{"result": "completed", "time": 3.2}', "status: Field required"),  # an older, other shape
        (
            '{"status": "finished", "reached_target": true, "time_to_target": {"metric": "val/acc", '
            '"target": 0.9}, "metrics": {}}',
            "status: Input should be",
        ),
        ("[1, 2]", "not a run summary"),
    ],
)
def test_an_unreadable_record_gives_one_line_naming_the_file(tmp_path, text, says):
    path = tmp_path / "summary.json"
    if text is None:
        full = _summary().to_json()
        text = full[: len(full) // 2]
    path.write_text(text)
    with pytest.raises(RecordError) as raised:
        read_summary(tmp_path)
    message = str(raised.value)
    assert str(path) in message and says in message and "\n" not in message


def test_a_summary_cannot_carry_an_unknown_field():
    with pytest.raises(ValueError, match="extra"):
        Summary.model_validate({**_summary().model_dump(), "speed": 3})


@pytest.mark.parametrize(
    ("overrides", "stop", "interval", "every_n_epochs"),
    [
        ([], False, None, 1),  # a single run: train to the end, validate once per epoch
        (
            ["run_mode=sweep"],
            True,
            SWEEP_VAL_CHECK_STEPS,
            None,
        ),  # a sweep job: stop at the target, every 5 steps
        (["run_mode=sweep", "target.stop=false"], False, SWEEP_VAL_CHECK_STEPS, None),
        (["run_mode=sweep", "trainer.val_check_interval=10"], True, 10, 1),  # explicit values stay
        (["run_mode=sweep", "trainer.check_val_every_n_epoch=2"], True, None, 2),  # validation by epochs
        (["run_mode=run", "target.stop=true"], True, None, 1),
    ],
)
def test_run_mode_resolves_the_mode_dependent_defaults(
    make_config, overrides, stop, interval, every_n_epochs
):
    cfg = make_config(*overrides)
    mode = resolve_run_mode(cfg)
    assert mode == ("sweep" if "run_mode=sweep" in overrides else "run") == cfg.run_mode
    assert (cfg.target.stop, cfg.trainer.val_check_interval) == (stop, interval)
    assert cfg.trainer.check_val_every_n_epoch == every_n_epochs
    assert resolve_run_mode(cfg) == mode and cfg.target.stop == stop  # idempotent


def test_a_bad_run_mode_is_refused(make_config):
    with pytest.raises(ValueError, match="run_mode='batch' is not valid"):
        resolve_run_mode(make_config("run_mode=batch"))


def test_stop_reason_follows_the_resolved_settings(make_config):
    sweep = make_config("run_mode=sweep", "trainer.max_epochs=15")
    resolve_run_mode(sweep)
    assert "target" in stop_reason(sweep, steps=70, epochs=4, reached_target=True)
    assert stop_reason(sweep, steps=70, epochs=4, reached_target=False) is None
    single = make_config("trainer.max_epochs=15")
    resolve_run_mode(single)
    assert stop_reason(single, steps=70, epochs=4, reached_target=True) is None  # a run trains on
    assert "max_epochs=15" in stop_reason(single, steps=300, epochs=15, reached_target=True)
    longer = make_config("trainer.max_epochs=30")
    resolve_run_mode(longer)
    assert stop_reason(longer, steps=300, epochs=15, reached_target=True) is None


@pytest.mark.parametrize(
    ("given", "saved", "hydra_mode", "mode"),
    [
        (["run_mode=sweep"], "sweep", "RUN", "sweep"),  # given by hand to a single run
        (["run_mode='sweep'"], "sweep", "RUN", "sweep"),  # quoted on the command line
        (["run_mode=run"], "run", "MULTIRUN", "run"),  # given by hand to a job of -m
        (["run_mode=null"], None, "MULTIRUN", "sweep"),  # null: the launch decides
        ([], None, "RUN", "run"),
        ([], None, "MULTIRUN", "sweep"),
    ],
)
def test_a_run_killed_before_its_record_resumes_in_the_mode_it_was_launched_in(
    tmp_path, given, saved, hydra_mode, mode
):
    # the files Hydra writes when a job starts: the overrides as typed, the composed config, how it was launched
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(
        json.dumps([*given, "optimizer=sgd", "hydra.job.chdir=false"])
    )
    (run / ".hydra" / "config.yaml").write_text(json.dumps({"seed": 0, "run_mode": saved}))
    (run / ".hydra" / "hydra.yaml").write_text(json.dumps({"hydra": {"mode": hydra_mode}}))
    assert resume_arguments([f"resume={run}", "trainer.max_epochs=3"]) == [
        f"run_mode={mode}",
        "optimizer=sgd",
        "hydra.mode=RUN",
        "trainer.max_epochs=3",
        f"hydra.run.dir={run.resolve()}",
        f"resume={run.resolve()}",
    ]


class _DiskFull(Exception):
    """What writing a row raises once the disk is full."""


def _full_disk_after(rows_written: int):
    """csv.DictWriter.writerows that writes `rows_written` rows, then fails as a full disk would."""
    writerows = csv.DictWriter.writerows

    def failing(self, rows):
        rows = list(rows)
        writerows(self, rows[:rows_written])
        raise _DiskFull("No space left on device")

    return failing


def _logged_run(folder) -> ResumableCSVLogger:
    """A CSV logger in `folder` holding 3 training rows and one validation row (a new column: a whole rewrite)."""
    logger = ResumableCSVLogger(save_dir=str(folder), name="", version="")
    for step in (9, 19, 29):
        logger.log_metrics({"train/loss": 1.0 / step}, step=step)
    logger.save()
    logger.log_metrics({"val/acc": 0.9}, step=29)
    logger.save()
    return logger


@pytest.mark.parametrize("when", ["a new column", "a resume"])
def test_metrics_csv_is_never_left_half_rewritten(tmp_path, monkeypatch, when):
    """Lightning rewrites metrics.csv in place (truncate, then copy every row back) for a new column, and deletes it
    when a logger opens the folder; a full disk or a kill in between lost the history. The file is replaced whole."""
    logger = _logged_run(tmp_path)
    path = tmp_path / "metrics.csv"
    before = path.read_bytes()
    assert before.count(b"\n") == 5 and b"val/acc" in before.splitlines()[0]
    monkeypatch.setattr(csv.DictWriter, "writerows", _full_disk_after(1))
    with pytest.raises(_DiskFull):
        if when == "a new column":
            logger.log_metrics({"test/acc": 0.8}, step=30)
            logger.save()
        else:  # resumed from the checkpoint of step 20: rows 9 and 19 are kept
            _ = ResumableCSVLogger(save_dir=str(tmp_path), name="", version="", resume_step=20).experiment
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]  # no temporary file left either

    monkeypatch.undo()
    resumed = ResumableCSVLogger(save_dir=str(tmp_path), name="", version="", resume_step=20)
    resumed.log_metrics({"train/loss": 0.5, "val/acc": 0.95}, step=29)
    resumed.save()
    assert [(r["step"], r["val/acc"]) for r in read_metrics_rows(path)] == [
        ("9", ""),
        ("19", ""),
        ("29", "0.95"),
    ]


def test_an_unreadable_record_of_a_resumed_run_is_warned_about_once(tmp_path, caplog):
    """A resume reads the record in several steps (its overrides, whether it finished): said once, not per step."""
    from trainspeed.resume import resume_arguments, sweep_job_plan

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- seed=3\n")
    (tmp_path / "summary.json").write_text('{"status": "comp')
    with caplog.at_level("WARNING"):
        assert "seed=3" in resume_arguments([f"resume={tmp_path}"])
        assert sweep_job_plan(tmp_path, ["seed=3"]) == ("run", None)
    warned = [r.getMessage() for r in caplog.records if "will be rewritten" in r.getMessage()]
    assert len(warned) == 1 and "summary.json is truncated or not JSON" in warned[0]


def test_relative_inputs_resolve_the_data_root_variable_as_the_config_does(tmp_path, monkeypatch):
    from trainspeed.record.run_folder import relative_inputs

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(
        "data: {name: mnist, root: '${oc.env:TRAINSPEED_DATA,data}'}\nmodel: {family: timm, weights: w.safetensors}\n"
    )
    monkeypatch.delenv("TRAINSPEED_DATA", raising=False)
    assert relative_inputs(tmp_path) == ["data.root=data", "model.weights=w.safetensors"]
    monkeypatch.setenv("TRAINSPEED_DATA", str(tmp_path))
    assert relative_inputs(tmp_path) == ["model.weights=w.safetensors"]


def test_a_checkpoint_of_other_inputs_is_refused_for_a_resume_and_warned_about_for_ckpt_path(caplog):
    from trainspeed.errors import ConfigError
    from trainspeed.resume import CheckpointState, check_same_inputs

    then, now = (
        {"data": "sha256:" + "a" * 64, "weights": None},
        {"data": "sha256:" + "b" * 64, "weights": None},
    )
    state = CheckpointState(step=10, epoch=0, reached_target=False, inputs=then)
    for key in ("resume", "checkpoint"):  # resume=, and a sweep job's own checkpoint on a relaunch
        with pytest.raises(ConfigError, match=r"the data: sha256:aaaaaaaaaaaa then, sha256:bbbbbbbbbbbb now"):
            check_same_inputs(state, now, key, "run")
    check_same_inputs(state, then, "resume", "run")  # the same inputs
    check_same_inputs(
        CheckpointState(step=10, epoch=0, reached_target=False), now, "resume", "run"
    )  # none kept
    with caplog.at_level("WARNING", logger="trainspeed"):
        check_same_inputs(state, now, "ckpt_path", "other.ckpt")  # a deliberate start from another run
    assert (
        "ckpt_path=other.ckpt: it was trained on other inputs than this config reads: the data" in caplog.text
    )
