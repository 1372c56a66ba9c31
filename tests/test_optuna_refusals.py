"""Bad settings of the Optuna sweeper are refused before any trial: one line naming the key, the value and what is
accepted, exit code 2, nothing written (no study, so no trial left running)."""

from __future__ import annotations

import pytest
from conftest import run_cli
from hydra.core.override_parser.overrides_parser import OverridesParser

from trainspeed.errors import ConfigError
from trainspeed.search.sampler import check_sampler, sampler_classes
from trainspeed.search.settings import search_settings
from trainspeed.search.space import check_choices_hold_keys, parse_space
from trainspeed.search.study import open_storage

GOOD = {"study_name": "s", "storage": None, "n_trials": 2, "n_jobs": 1, "seeds": [0], "prune_factor": 2.0}


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("hydra.sweeper.sampler.name=Foo", "hydra.sweeper.sampler.name='Foo' is not valid"),
        # the preset searches optimizer.momentum, which adam has not: this ended the search when adam was drawn
        (
            "optimizer=choice(momentum,adam)",
            "optimizer='choice(momentum, adam)' is not valid (optimizer=adam has no optimizer.momentum, which "
            "every trial sets",
        ),
        pytest.param(
            "optimizer.lr=tag(log,interval(0,1))",
            "optimizer.lr='tag(log,interval(0,1))' is not valid",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "hydra.sweeper.storage=bogus://x",
            "hydra.sweeper.storage='bogus://x' is not valid",
            marks=pytest.mark.slow,
        ),  # also refused in-process below
        pytest.param(
            "hydra.sweeper.seeds=[]", "hydra.sweeper.seeds=[] is not valid", marks=pytest.mark.slow
        ),  # also refused in-process below
        pytest.param(
            "hydra.sweeper.prune_factor=-1",
            "hydra.sweeper.prune_factor=-1 is not valid",
            marks=pytest.mark.slow,
        ),  # also refused in-process below
    ],
)
def test_a_bad_sweeper_setting_is_one_line_and_exit_code_2(tmp_path, override, says):
    args = ["trainspeed.train", "-m", "hparams_search=optuna", override, "hydra.sweep.dir=sweep"]
    result = run_cli(args, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"trainspeed: error: {says}"), result.stderr[-3000:]
    assert "; accepted: " in lines[0]
    assert not (tmp_path / "sweep").exists()  # no study, no job folder: nothing to clean up, no trial running


@pytest.mark.parametrize(
    ("change", "key", "accepted"),
    [
        ({"n_trials": 0}, "hydra.sweeper.n_trials", "an integer ≥ 1"),
        ({"n_trials": -3}, "hydra.sweeper.n_trials", "an integer ≥ 1"),
        ({"n_jobs": 0}, "hydra.sweeper.n_jobs", "an integer ≥ 1"),
        ({"seeds": [0, -1]}, "hydra.sweeper.seeds", "each an integer in [0, 4294967295]"),
        ({"prune_factor": 0}, "hydra.sweeper.prune_factor", "a number ≥ 1"),  # 0 is not "never": null is
        ({"prune_factor": 0.5}, "hydra.sweeper.prune_factor", "or null (never prune)"),
        ({"study_name": ""}, "hydra.sweeper.study_name", "a non-empty string"),
        ({"n_trial": 3}, "hydra.sweeper.n_trial", "n_trials"),
        (
            {"sampler": {"name": "TPESampler", "kwargs": {"n_startup": 3}}},
            "hydra.sweeper.sampler.kwargs",
            "TPE",
        ),
        ({"sampler": {"name": "TPESampler", "seed": -1}}, "hydra.sweeper.sampler.seed", "an integer in"),
    ],
)
def test_sweeper_settings_table(change, key, accepted):
    with pytest.raises(ConfigError) as refused:
        search_settings({**GOOD, **change})
    assert refused.value.key == key and accepted in refused.value.accepted


def test_good_settings_are_typed_and_a_factor_of_one_or_null_is_accepted():
    settings = search_settings({**GOOD, "prune_factor": 1, "sampler": {"name": "RandomSampler", "seed": 3}})
    assert (settings.prune_factor, settings.sampler_name, settings.sampler_seed) == (1.0, "RandomSampler", 3)
    assert search_settings({**GOOD, "prune_factor": None}).prune_factor is None


def test_only_samplers_a_config_can_build_are_offered():
    names = set(sampler_classes())
    assert {"TPESampler", "RandomSampler", "CmaEsSampler", "QMCSampler", "BruteForceSampler"} <= names
    assert not names & {"BaseSampler", "BaseGASampler", "PartialFixedSampler", "GridSampler"}
    with pytest.raises(ConfigError) as refused:
        check_sampler("GridSampler", {"search_space": {"x": [1, 2]}})
    assert "use BruteForceSampler" in str(refused.value) and "accepted: BruteForceSampler, " in str(
        refused.value
    )


def test_brute_force_needs_a_finite_space_and_ends_the_search_when_it_is_exhausted(tmp_path):
    from trainspeed.search.outcome import TrialOutcome
    from trainspeed.search.sampler import check_sampler_space
    from trainspeed.search.settings import SearchSettings
    from trainspeed.search.study import open_study, space_exhausted, space_size, tell

    parser = OverridesParser.create()
    with pytest.raises(ConfigError, match="optimizer.lr is a continuous interval"):
        check_sampler_space(
            "BruteForceSampler", parse_space(parser, {}, ["optimizer.lr=interval(0.1,1)"]).distributions
        )
    space = parse_space(parser, {}, ["optimizer=choice(sgd,adam)"])
    settings = SearchSettings("s", None, n_trials=5, n_jobs=1, seeds=[0], prune_factor=None,
                              sampler_name="BruteForceSampler", sampler_seed=0)  # fmt: skip
    study = open_study(settings, tmp_path)
    reached = TrialOutcome(status="reached", value=1.0, seconds=[1.0], train_seconds=1.0, jobs=[])
    asked, exhausted = [], []
    for _ in range(2):
        trial = study.ask()
        asked.append(space.suggest(trial)["optimizer"])
        exhausted.append(tell(study, trial, [0], reached))
    assert sorted(asked) == ["adam", "sgd"]
    assert exhausted == [False, True]  # the sampler's Study.stop ends the search instead of crashing it
    assert {t.state.name for t in study.trials} == {"COMPLETE"}
    # a re-launch finds the space already exhausted before asking: no point is tried twice
    assert space_exhausted(open_study(settings, tmp_path), space)
    assert not space_exhausted(
        open_study(settings, tmp_path), parse_space(parser, {}, ["optimizer=choice(sgd,adam,nadam)"])
    )
    assert space_size(parse_space(parser, {}, ["model.depth=range(1,5)", "optimizer.lr=choice(0.1,1)"])) == 8


@pytest.mark.parametrize(
    ("params", "arguments", "key", "accepted"),
    [
        ({}, ["optimizer=choice(momentum,nesterovv)"], "optimizer", "did you mean nesterov?"),
        ({"activation": "choice(relu,gelu,swish)"}, [], "hydra.sweeper.params.activation", "did you mean"),
        (
            {},
            ["optimizer.lr=tag(log,interval(0,1))"],
            "optimizer.lr",
            "tag(log, interval(a, b)) with 0 < a ≤ b",
        ),
        (
            {"optimizer.lr": "interval(1,0.1)"},
            [],
            "hydra.sweeper.params.optimizer.lr",
            "interval(a, b) with a ≤ b",
        ),
        ({}, ["model.depth=tag(int,log,interval(0,4))"], "model.depth", "with 1 ≤ a ≤ b"),
        ({}, ["model.depth=range(5,1)"], "model.depth", "at least one value"),
        ({}, ["seed=range(0,0)"], "seed", "one or more seeds"),
    ],
)
def test_a_bad_search_space_names_where_it_was_written(params, arguments, key, accepted):
    with pytest.raises(ConfigError) as refused:
        parse_space(OverridesParser.create(), params, arguments)
    assert refused.value.key == key and accepted in refused.value.accepted


@pytest.mark.parametrize(
    "url", ["bogus://x", "sqlite:////no/such/folder/study.db", "postgresql+nodriver://h/db"]
)
def test_a_storage_that_cannot_be_opened_is_a_config_error(tmp_path, url):
    with pytest.raises(ConfigError) as refused:
        open_storage(url, tmp_path)
    assert refused.value.key == "hydra.sweeper.storage" and "journal:<file>" in refused.value.accepted


def test_a_damaged_optuna_db_in_the_sweep_folder_is_named(tmp_path):
    from trainspeed.search.study import open_storage

    (tmp_path / "optuna.db").write_bytes(bytes(range(256)) * 20)
    with pytest.raises(ConfigError, match=r"optuna\.db: .*file is not a database"):
        open_storage(None, tmp_path)


def test_an_enqueued_trial_is_checked_against_the_search_space():
    from trainspeed.search.space import check_enqueued

    space = parse_space(
        OverridesParser.create(),
        {},
        ["optimizer.lr=tag(log,interval(0.001,1))", "optimizer=choice(sgd,adam)"],
    )
    check_enqueued([{"optimizer.lr": 0.03, "optimizer": "adam"}], space)  # fine
    check_enqueued([{"optimizer.lr": 5.0}], space)  # outside the range: tried as given, as Optuna does
    with pytest.raises(
        ConfigError,
        match=r"hydra.sweeper.enqueue\[0\].optimizer.lr=-1 is not valid; accepted: a value its search",
    ):
        check_enqueued([{"optimizer.lr": -1}], space)
    with pytest.raises(
        ConfigError, match=r"enqueue\[1\].optimizer.lrr=0.1 is not valid; accepted: a searched parameter"
    ):
        check_enqueued([{"optimizer": "sgd"}, {"optimizer.lrr": 0.1}], space)
    with pytest.raises(ConfigError, match=r"enqueue\[0\].optimizer='nadam' is not valid"):
        check_enqueued([{"optimizer": "nadam"}], space)


@pytest.mark.parametrize(
    ("arguments", "refused"),
    [
        (["optimizer=choice(momentum,nesterov)", "optimizer.momentum=interval(0.5,0.99)"], None),
        (
            ["optimizer=choice(adam,momentum)", "optimizer.momentum=interval(0.5,0.99)"],
            "optimizer=adam has no",
        ),
        (["optimizer=choice(momentum,adam)", "optimizer.momentum=0.9"], "optimizer=adam has no"),  # fixed
        (["optimizer=choice(momentum,sgd)", "optimizer.lr=tag(log,interval(1e-3,1))"], None),  # both have lr
        (["optimizer=choice(adam,sgd)", "optimizer.betas=choice([0.9,0.999],[0.8,0.99])"], "optimizer=sgd"),
        (["model=choice(mlp,cnn)", "model.width=choice(64,128)"], "model=cnn has no model.width"),
        (["optimizer=choice(adam,sgd)", "model.width=choice(64,128)"], None),  # another group's key
    ],
)
def test_every_option_of_a_searched_group_must_have_the_keys_the_search_sets(make_config, arguments, refused):
    """Composed with Hydra for each option, as the launcher composes each job."""
    from trainspeed.config_paths import compose_run_config

    space = parse_space(OverridesParser.create(), {}, arguments)
    compose = lambda overrides: compose_run_config(overrides, "unused")  # noqa: E731
    if refused is None:
        check_choices_hold_keys(space, compose)
        return
    with pytest.raises(ConfigError, match=f"is not valid \\({refused}"):
        check_choices_hold_keys(space, compose)


def test_a_sweep_folder_whose_jobs_lost_their_study_is_refused_and_left_as_it_was(tmp_path):
    """An emptied optuna.db started a new study beside the jobs of the old one (trials numbered anew, the study
    record rewritten without them)."""
    from trainspeed.search.study import check_study_kept

    sweep = tmp_path / "sweep"
    (sweep / "0" / ".hydra").mkdir(parents=True)
    (sweep / "0" / "summary.json").write_text('{"status": "completed"}')
    (sweep / "1").mkdir()
    (sweep / "optuna.db").write_bytes(b"")
    args = ["trainspeed.train", "-m", "hparams_search=optuna", "hydra.sweep.dir=sweep"]
    result = run_cli(args, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "hydra.sweep.dir=" in result.stderr and (
        "is not valid (it holds job folders up to 1, but its optuna.db is empty: a new study would start beside "
        "jobs it knows nothing of); accepted: a new folder for a new search" in result.stderr
    )
    assert sorted(str(p.relative_to(sweep)) for p in sweep.rglob("*")) == [
        "0", "0/.hydra", "0/summary.json", "1", "optuna.db"
    ]  # fmt: skip
    assert (sweep / "optuna.db").read_bytes() == b""
    (sweep / "optuna.db").unlink()
    with pytest.raises(ConfigError, match="its optuna.db is missing"):
        check_study_kept(sweep)
    check_study_kept(tmp_path / "new")  # a new folder, or one without jobs, starts a study
    check_study_kept(tmp_path)
