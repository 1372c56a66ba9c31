"""hparams_search=optuna: the search space, trial outcomes, the pruning budget, and whole studies (a diverging and
a failing trial among them, a relaunch, two processes on one storage)."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import REPO, run_cli
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from trainspeed.record.summary import Summary, TimeToTargetRecord, write_summary
from trainspeed.search.budget import STOPPED_FILE, write_budget
from trainspeed.search.outcome import trial_outcome
from trainspeed.search.settings import SearchSettings
from trainspeed.search.space import parse_space
from trainspeed.search.study import open_study
from trainspeed.sweep_console import outcome

# a quick search: the digits MLP at learning rates that reach 95 % within a few epochs
QUICK = [
    "-m",
    "hparams_search=optuna",
    "logger=csv",
    "run_test=false",
    "trainer.max_epochs=4",
    "model.width=64",
    "optimizer.lr=tag(log,interval(0.05,0.5))",
    "hydra.sweeper.sampler.seed=0",
]


def test_search_space_from_params_and_command_line():
    params = {
        "optimizer.lr": "tag(log, interval(1e-4, 1))",
        "optimizer": "choice(adam, adamw)",
        "seed": "0,1",
    }
    args = ["model.depth=range(1,4)", "model.width=tag(int, interval(8, 64))", "trainer.max_epochs=3"]
    space = parse_space(OverridesParser.create(), params, args)
    assert space.distributions == {
        "optimizer.lr": FloatDistribution(1e-4, 1.0, log=True),
        "optimizer": CategoricalDistribution(["adam", "adamw"]),
        "model.depth": IntDistribution(1, 3),
        "model.width": IntDistribution(8, 64),
    }
    assert space.fixed == ["trainer.max_epochs=3"] and space.seeds == [0, 1]
    jobs = space.job_overrides({"optimizer.lr": 0.01, "optimizer": "adam"})
    assert jobs == [
        ["trainer.max_epochs=3", "optimizer.lr=0.01", "optimizer=adam", f"seed={s}"] for s in (0, 1)
    ]


def test_list_choices_stay_override_text():
    space = parse_space(OverridesParser.create(), {"optimizer.betas": "choice([0.9,0.999],[0.8,0.99])"}, [])
    assert space.distributions["optimizer.betas"].choices == ("[0.9,0.999]", "[0.8,0.99]")


def _job(folder: Path, status: str, seconds: float | None, train_seconds: float = 1.0) -> Path:
    folder.mkdir()
    write_summary(
        folder,
        Summary(
            status=status,
            reached_target=seconds is not None,
            time_to_target=TimeToTargetRecord(metric="val/acc", target=0.95, seconds=seconds),
            metrics={},
            train_seconds=train_seconds,
        ),
    )
    return folder


@pytest.mark.parametrize(
    ("jobs", "status", "value"),
    [
        ([("completed", 2.0), ("completed", 1.0), ("completed", 4.0)], "reached", 2.0),
        ([("completed", 2.0), ("completed", None)], "missed", math.inf),
        ([("completed", 2.0), ("diverged", None)], "diverged", math.inf),
        ([("failed", None), ("diverged", None)], "failed", math.inf),
    ],
)
def test_trial_outcome_is_the_median_or_worse_than_any_reached(tmp_path, jobs, status, value):
    folders = [_job(tmp_path / str(i), s, sec) for i, (s, sec) in enumerate(jobs)]
    outcome = trial_outcome(folders)
    assert (outcome.status, outcome.value) == (status, value)


def test_a_job_without_record_fails_its_trial_and_a_budget_stop_prunes_it(tmp_path):
    (tmp_path / "0").mkdir()
    assert trial_outcome([tmp_path / "0"]).status == "failed"
    stopped = _job(tmp_path / "1", "completed", None, train_seconds=3.0)
    (stopped / STOPPED_FILE).write_text('{"train_seconds": 3.0, "budget": 2.5}')
    outcome = trial_outcome([stopped])
    assert (outcome.status, outcome.train_seconds) == ("pruned", 3.0)


def test_the_budget_stops_a_real_job_at_its_first_validation(make_config, tmp_path):
    from trainspeed.job import run_job

    write_budget(tmp_path, 1e-9)
    cfg = make_config(
        "trainer.max_epochs=3", "trainer.val_check_interval=5", "trainer.check_val_every_n_epoch=null",
        "trainer.enable_progress_bar=false", "logger=csv", "run_test=false",
        "+callbacks.search_budget._target_=trainspeed.search.budget.TrainSecondsBudget",
        f"+callbacks.search_budget.budget_file={tmp_path}/optuna_budget.json",
        "+callbacks.search_budget.run_dir=${hydra:runtime.output_dir}",
    )  # fmt: skip
    summary = run_job(cfg)
    assert summary.steps == 5 and not summary.reached_target
    stop = json.loads((Path(cfg.hydra.runtime.output_dir) / STOPPED_FILE).read_text())
    assert stop["budget"] == 1e-9 and stop["train_seconds"] > 0
    # the record says the budget stopped it, and the sweep's job line says pruned, not "target not reached"
    on_disk = json.loads((Path(cfg.hydra.runtime.output_dir) / "summary.json").read_text())
    assert (on_disk["status"], on_disk["stopped_by"], on_disk["budget_seconds"]) == (
        "completed",
        "budget",
        1e-9,
    )
    assert outcome(summary).startswith(
        f"pruned (training seconds {summary.train_seconds:.4g} over the budget 1e-09 s"
    )


def _settings(**changes) -> SearchSettings:
    return SearchSettings(
        study_name="s", storage=None, n_trials=4, n_jobs=1, seeds=[0], prune_factor=None, **changes
    )


def _ask(study: optuna.Study, space, n: int) -> list[dict]:
    """n trials' parameters, each told a finite value (as if it reached the target)."""
    asked = []
    for _ in range(n):
        trial = study.ask()
        asked.append(space.suggest(trial))
        study.tell(trial, 1.0)
    return asked


@pytest.mark.parametrize("sampler", ["TPESampler", "RandomSampler"])
def test_a_continued_seeded_study_samples_new_points_and_stays_reproducible(tmp_path, sampler):
    space = parse_space(
        OverridesParser.create(), {"lr": "tag(log, interval(1e-4, 1))", "m": "interval(0, 1)"}, []
    )
    settings = _settings(sampler_name=sampler, sampler_seed=0)
    first = _ask(open_study(settings, tmp_path / "a"), space, 4)
    continued = _ask(open_study(settings, tmp_path / "a"), space, 2)  # a relaunch onto the same study
    assert not any(p in first for p in continued)  # not trials 0 and 1 again
    # a fresh study with the same seed repeats the first launch, and its continuation the second
    assert _ask(open_study(settings, tmp_path / "b"), space, 4) == first
    assert _ask(open_study(settings, tmp_path / "b"), space, 2) == continued
    assert (
        len(optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'a' / 'optuna.db'}").trials)
        == 6
    )


def _study(sweep: Path, storage: str | None = None) -> optuna.Study:
    url = storage or f"sqlite:///{sweep / 'optuna.db'}"
    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        url = JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    return optuna.load_study(study_name="trainspeed", storage=url)


@pytest.mark.slow
def test_study_with_a_diverging_and_a_failing_trial_completes_every_trial(tmp_path):
    # enqueued first: lr 1000 diverges; momentum 1.5 is refused by validation, so its job fails
    enqueue = "hydra.sweeper.enqueue=[{optimizer.lr:1000.0},{optimizer.momentum:1.5}]"
    args = ["trainspeed.train", *QUICK, "hydra.sweeper.n_trials=8", enqueue, "hydra.sweep.dir=sweep"]
    result = run_cli(args, cwd=tmp_path, timeout=1200)
    assert result.returncode == 1, result.stderr[-3000:]  # a failed job: exit code 1, as for any sweep
    sweep = tmp_path / "sweep"
    trials = _study(sweep).trials
    assert len(trials) == 8 and len(list(sweep.glob("[0-9]*/summary.json"))) == 8
    statuses = [t.user_attrs["status"] for t in trials]
    assert statuses[:2] == ["diverged", "failed"]
    assert trials[0].value == math.inf and trials[1].value == math.inf  # worse than any trial that reached
    reached = [t for t in trials if t.user_attrs["status"] == "reached"]
    assert reached and all(math.isfinite(t.value) for t in reached)
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    report = (sweep / "report.md").read_text()
    assert "## Optuna study: trainspeed" in report and "| 1 | failed |" in report
    assert (sweep / "plots" / "optuna_history.png").is_file()


@pytest.mark.slow
def test_relaunch_adds_trials_to_the_same_study(tmp_path):
    args = ["trainspeed.train", *QUICK, "hydra.sweeper.n_trials=2", "hydra.sweep.dir=sweep"]
    for _ in range(2):
        result = run_cli(args, cwd=tmp_path, timeout=1200)
        assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    trials = _study(sweep).trials
    assert len(trials) == 4
    assert trials[2].params not in (
        trials[0].params,
        trials[1].params,
    )  # seeded, yet not the same trials again
    assert sorted(int(p.name) for p in sweep.glob("[0-9]*")) == [0, 1, 2, 3]  # new jobs, none re-used
    assert len(json.loads((sweep / "optuna" / "study.json").read_text())["trials"]) == 4


@pytest.mark.slow
def test_two_processes_on_one_journal_storage_both_add_trials(tmp_path):
    storage = f"journal:{tmp_path / 'shared' / 'study.log'}"
    env = {"WANDB_MODE": "offline", "PYTHONPATH": str(REPO / "src")}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trainspeed.train",
                *QUICK,
                "hydra.sweeper.n_trials=2",
                f"hydra.sweeper.storage={storage}",
                f"hydra.sweep.dir=sweep{i}",
            ],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**__import__("os").environ, **env},
        )  # fmt: skip
        for i in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=1200)
        assert proc.returncode == 0, err[-3000:]
    trials = _study(tmp_path, storage).trials
    assert len(trials) == 4
    folders = {Path(j).parent.name for t in trials for j in t.user_attrs["jobs"]}
    assert folders == {"sweep0", "sweep1"}


@pytest.mark.parametrize("preset", ["optuna", "optuna_adam"])
def test_search_presets_compose_and_every_choice_gives_a_valid_job(make_config, preset):
    from trainspeed.validation import validate

    cfg = make_config(f"hparams_search={preset}")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("TrainspeedOptunaSweeper") and sweeper.sampler.name == "TPESampler"
    space = parse_space(OverridesParser.create(), dict(sweeper.params), [])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(3):
        params = space.suggest(study.ask())
        validate(make_config(f"hparams_search={preset}", *space.job_overrides(params)[0]))


def test_study_report_part_from_the_study_file(tmp_path):
    from trainspeed.report.study import read_study_record, study_blocks, study_plots, write_study_record

    study = optuna.create_study(study_name="s", sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial({"lr": 1000.0})  # outside the searched range, as an enqueued diverging trial may be
    for number in range(6):
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-3, 1.0, log=True)
        trial.suggest_categorical("opt", ["sgd", "adam"])
        trial.set_user_attr("status", "diverged" if number == 0 else "reached")
        trial.set_user_attr("jobs", [str(tmp_path / str(number))])
        study.tell(trial, math.inf if number == 0 else 1.0 / lr)
    write_study_record(study, tmp_path)
    record = read_study_record(tmp_path)
    assert record["trials"][0]["value"] is None and record["trials"][1]["value"] > 0  # JSON has no infinity
    images = study_plots(tmp_path)
    assert set(images) == {"optuna_history.png", "optuna_importance.png"}
    blocks = study_blocks(tmp_path, list(images))
    table = next(b for b in blocks if b[0] == "table")
    assert table[1][:3] == ["trial", "status", "median s"] and [r[1] for r in table[2]][:2] == [
        "diverged",
        "reached",
    ]
    best = min(record["trials"][1:], key=lambda t: t["value"])
    assert any(b[0] == "p" and f"Best trial: #{best['number']}" in b[1] for b in blocks)


def test_the_trials_table_tells_job_folders_of_two_sweeps_on_one_storage_apart(tmp_path):
    from trainspeed.report.study import study_blocks, write_study_record

    sweep, other = tmp_path / "sweep0", tmp_path / "sweep1"
    study = optuna.create_study(study_name="shared", sampler=optuna.samplers.RandomSampler(seed=0))
    for folder in (sweep / "0", other / "0"):  # each process numbers its jobs from 0 in its own sweep folder
        trial = study.ask()
        trial.suggest_float("lr", 1e-3, 1.0, log=True)
        trial.set_user_attr("jobs", [str(folder)])
        study.tell(trial, 1.0)
    write_study_record(study, sweep)
    table = next(b for b in study_blocks(sweep, []) if b[0] == "table")
    assert [row[-1] for row in table[2]] == ["0", str(other / "0")]


@pytest.mark.slow
def test_ctrl_c_fails_the_trial_with_its_job_linked_and_the_study_recorded(tmp_path):
    sweep = tmp_path / "sweep"
    args = [*QUICK, "hydra.sweeper.n_trials=2", "trainer.max_epochs=1000", "target.stop=false"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainspeed.train", *args, f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**__import__("os").environ, "WANDB_MODE": "offline", "PYTHONPATH": str(REPO / "src")},
        # a shell that started the tests in the background may have SIGINT ignored: Ctrl-C must reach the run
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while not (sweep / "0" / "checkpoints" / "best.ckpt").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.05)  # polling for a file, not waiting for time to pass
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    (trial,) = _study(sweep).trials  # the second trial was never asked
    assert trial.state.name == "FAIL" and trial.user_attrs["status"] == "interrupted"
    assert trial.user_attrs["jobs"] == [str(sweep / "0")]
    (recorded,) = json.loads((sweep / "optuna" / "study.json").read_text())["trials"]
    assert (recorded["state"], recorded["jobs"]) == ("FAIL", [str(sweep / "0")])


@pytest.mark.slow
def test_a_relaunch_with_other_choices_is_refused_before_anything_is_written(tmp_path):
    args = ["trainspeed.train", *QUICK, "hydra.sweeper.n_trials=1", "hydra.sweep.dir=sweep"]
    assert (
        run_cli([*args, "optimizer.weight_decay=choice(0.0,0.1)"], cwd=tmp_path, timeout=600).returncode == 0
    )
    sweep = tmp_path / "sweep"
    before = {str(p): p.read_bytes() for p in sorted(sweep.rglob("*")) if p.is_file()}
    changed = run_cli([*args, "optimizer.weight_decay=choice(0.0,0.1,0.2)"], cwd=tmp_path, timeout=600)
    assert changed.returncode == 2
    assert (
        "optimizer.weight_decay='CategoricalDistribution(choices=(0.0, 0.1, 0.2))' is not valid"
        in changed.stderr
    )
    assert "a changed search space needs a new hydra.sweep.dir" in changed.stderr
    assert "Traceback" not in changed.stderr
    after = {str(p): p.read_bytes() for p in sorted(sweep.rglob("*")) if p.is_file()}
    assert after == before  # no failed trial added, multirun.yaml as it was
    assert [t.state for t in _study(sweep).trials] == [TrialState.COMPLETE]


@pytest.mark.slow
def test_a_trial_left_running_by_a_killed_search_is_marked_failed_on_relaunch(tmp_path):
    # no pruning: the third trial's state must not depend on how busy the machine is (its budget is in seconds)
    args = ["trainspeed.train", *QUICK, "hydra.sweeper.n_trials=1", "hydra.sweeper.prune_factor=null"]
    args.append("hydra.sweep.dir=sweep")
    assert run_cli(args, cwd=tmp_path, timeout=600).returncode == 0
    sweep = tmp_path / "sweep"
    _study(sweep).ask()  # what a launch killed with SIGKILL between ask and tell leaves behind
    assert run_cli(args, cwd=tmp_path, timeout=600).returncode == 0
    assert [t.state for t in _study(sweep).trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]
    assert _study(sweep).trials[1].user_attrs["status"] == "killed"


@pytest.mark.parametrize("stop_in", ["update_budget", "ask"])
def test_ctrl_c_between_two_batches_leaves_no_trial_running_and_records_the_study(
    tmp_path, monkeypatch, stop_in
):
    """Ctrl-C lands wherever the sweeper happens to be, also outside a batch's launch."""
    from trainspeed.search import study as study_module
    from trainspeed.search.settings import SearchSettings
    from trainspeed.search.space import SearchSpace

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = SearchSpace(distributions={"optimizer.lr": FloatDistribution(1e-3, 1.0, log=True)}, seeds=[0])
    settings = SearchSettings("s", None, n_trials=3, n_jobs=1, seeds=[0], prune_factor=2.0)
    calls = {"update_budget": 0, "ask": 0}
    real = {"update_budget": study_module.update_budget, "ask": study.ask}

    def interrupted(name):
        def call(*args, **kwargs):
            calls[name] += 1
            if calls[name] == 2:  # the second call: after the first batch was told
                raise KeyboardInterrupt
            return real[name](*args, **kwargs)

        return call

    if stop_in == "update_budget":
        monkeypatch.setattr(study_module, "update_budget", interrupted("update_budget"))
    else:
        monkeypatch.setattr(study, "ask", interrupted("ask"))
    recorded = []
    with pytest.raises(KeyboardInterrupt):
        study_module.run_trials(study, space, lambda batch, first: [tmp_path / str(first)], tmp_path, settings,
                                lambda s: recorded.append(len(s.trials)))  # fmt: skip
    assert recorded and recorded[-1] == len(study.trials)  # the study record written after the Ctrl-C too
    assert TrialState.RUNNING not in [t.state for t in study.trials]
