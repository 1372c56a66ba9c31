"""Which differences are real: ratios of medians against the fastest with bootstrap intervals, on hand-made timings."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import make_job
from rich.console import Console

from trainspeed.report import build_report
from trainspeed.report.aggregate import ConfigResult, rank
from trainspeed.report.collect import Run
from trainspeed.report.significance import (
    FASTEST,
    ONE_SEED,
    SLOWER,
    TIED,
    bootstrap_ratio,
    compare,
)
from trainspeed.report.significance_text import CSV_COLUMNS, explanation, tied_line
from trainspeed.report.terminal import print_ranking


def _config(name: str, seconds: list[float | None], steps: list[float | None] | None = None) -> ConfigResult:
    """A configuration whose seed i reached the target in seconds[i] (None: never reached)."""
    steps = steps if steps is not None else [None if s is None else s * 10 for s in seconds]
    runs = [
        Run(
            job=f"{name}{i}",
            path=Path("."),
            status="completed",
            overrides=[name, f"seed={i}"],
            seed=str(i),
            reached=s is not None,
            seconds=s,
            steps=t,
        )
        for i, (s, t) in enumerate(zip(seconds, steps, strict=True))
    ]
    return ConfigResult(config=name, overrides=(name,), runs=runs)


def test_identical_samples_are_tied():
    sig = compare(rank([_config("a=1", [2.0, 3.0, 4.0]), _config("a=2", [2.0, 3.0, 4.0])]))
    verdicts = sorted(r.verdict for r in sig.seconds.values())
    assert verdicts == [FASTEST, TIED]
    tied = next(r for r in sig.seconds.values() if r.verdict == TIED)
    assert tied.ratio == 1.0 and tied.low < 1.0 < tied.high


def test_clearly_separated_samples_are_not_tied():
    sig = compare(rank([_config("a=slow", [4.0, 4.2, 4.1]), _config("a=fast", [1.0, 1.1, 0.9])]))
    assert sig.fastest_seconds == "a=fast" and sig.fastest_steps == "a=fast"
    slow = sig.seconds["a=slow"]
    assert slow.verdict == SLOWER and slow.ratio == pytest.approx(4.1)
    assert 3.5 < slow.low <= slow.ratio <= slow.high < 4.7  # the interval lies within the seeds' ratios
    assert sig.steps["a=slow"].verdict == SLOWER
    assert (sig.seconds["a=fast"].rank, slow.rank) == (1, 2)


def test_overlapping_samples_are_tied():
    sig = compare(rank([_config("a=1", [1.0, 2.0, 5.0]), _config("a=2", [1.5, 3.0, 4.0])]))
    assert sig.seconds["a=2"].verdict == TIED


def test_one_seed_gives_no_interval_and_says_so():
    sig = compare(rank([_config("a=1", [1.0]), _config("a=2", [3.0])]))
    other = sig.seconds["a=2"]
    assert other.verdict == ONE_SEED and other.low is None and other.high is None and other.ratio == 3.0
    assert sig.one_seed and "no interval" in explanation(sig)


def test_a_configuration_that_never_reaches_is_slower_with_an_infinite_ratio():
    sig = compare(rank([_config("a=good", [1.0, 1.2]), _config("a=stalls", [None, None])]))
    stalls = sig.seconds["a=stalls"]
    assert stalls.verdict == SLOWER and math.isinf(stalls.ratio) and math.isinf(stalls.low)


def test_the_fastest_always_reached_even_if_another_median_is_smaller():
    sig = compare(rank([_config("a=steady", [3.0, 3.0, 3.0]), _config("a=flaky", [1.0, 1.0, None])]))
    assert sig.fastest_seconds == "a=steady"
    assert sig.seconds["a=flaky"].rank == 2


def test_the_bootstrap_is_reproducible():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.5, 2.0])
    assert bootstrap_ratio(a, b) == bootstrap_ratio(a, b)


def test_costly_steps_lead_on_steps_and_trail_on_seconds():
    cheap = _config("optimizer=sgd", [1.0, 1.1, 1.05], steps=[100, 110, 105])
    costly = _config("optimizer=lbfgs", [3.0, 3.1, 3.2], steps=[20, 25, 20])
    sig = compare(rank([cheap, costly]))
    assert sig.fastest_seconds == "optimizer=sgd" and sig.fastest_steps == "optimizer=lbfgs"
    assert sig.seconds["optimizer=lbfgs"].rank == 2 and sig.steps["optimizer=lbfgs"].rank == 1
    assert len(sig.disagreements) == 1
    assert sig.disagreements[0].startswith("optimizer=lbfgs needs fewer steps than optimizer=sgd")


def test_noise_among_tied_configurations_is_not_a_disagreement():
    a = _config("x=1", [1.0, 2.0, 3.0], steps=[30, 20, 10])
    b = _config("x=2", [1.5, 2.5, 2.0], steps=[20, 25, 30])
    assert compare(rank([a, b])).disagreements == []


def test_the_report_files_and_the_terminal_show_the_comparison(tmp_path):
    sweep = tmp_path / "sweep"
    times = {"adam": [1.0, 1.1, 1.2], "sgd": [3.0, 3.3, 3.1], "nadam": [1.05, 1.15, 1.1]}
    num = 0
    for opt, seconds in times.items():
        for seed, s in enumerate(seconds):
            make_job(sweep, num, [f"optimizer={opt}", f"seed={seed}"], seconds=s)
            num += 1
    report = build_report(sweep, print_table=False)
    with report.csv_path.open(newline="") as f:
        rows = {row["config"]: row for row in csv.DictReader(f)}
    assert set(CSV_COLUMNS) <= set(next(iter(rows.values())))
    assert rows["optimizer=adam"]["seconds_vs_fastest"] == FASTEST
    assert rows["optimizer=nadam"]["seconds_vs_fastest"] == TIED
    assert rows["optimizer=sgd"]["seconds_vs_fastest"] == SLOWER
    assert float(rows["optimizer=sgd"]["seconds_ratio_low"]) > 1
    assert rows["optimizer=sgd"]["steps_rank"] == "3"
    markdown = report.md_path.read_text()
    assert "## Which differences are real" in markdown and "bootstrap" in markdown
    assert "× [" in markdown and "tied" in markdown
    assert "Which differences are real" in report.html_path.read_text()
    console = Console(width=250, record=True)
    print_ranking(report.rows, sweep, report.md_path, console=console, significance=report.significance)
    text = console.export_text()
    assert "× fastest s" in text and "slower" in text and "#3 " in text
    assert "tied with it" in text and "optimizer=nadam" in text.split("tied with it")[1]


@pytest.mark.parametrize(
    ("configs", "said", "not_said"),
    [
        ([("a=1", [1.0]), ("a=2", [3.0])], "one seed, no interval: nothing can be said: a=2", "slower"),
        (
            [("a=steady", [3.0, 3.0, 3.0]), ("a=flaky", [1.0, 1.1, 1.0, 1.2, 1.05, 1.1, None])],
            "faster in median (95% CI below 1) but not reaching the target in every seed: a=flaky",
            "slower",
        ),
        (
            [("a=1", [1.0, 1.1, 1.2]), ("a=2", [1.05, 1.15, 1.1]), ("a=3", [3.0, 3.3, 3.1])],
            "tied with it (95% bootstrap CI of the ratio of medians covers 1): a=2; "
            "significantly slower (95% CI above 1): a=3",
            "one seed",
        ),
    ],
)
def test_the_terminal_line_names_each_configuration_by_its_verdict(configs, said, not_said):
    line = tied_line(compare(rank([_config(name, seconds) for name, seconds in configs])))
    assert line.startswith("fastest in seconds: a=") and said in line and not_said not in line
