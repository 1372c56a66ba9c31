"""The paper presets reproduce their paper's qualitative result on the bundled digits, read from the sweep's records.

Each test runs one whole preset (about a minute on 2 CPU cores) and asserts the claim its header states: the good arm
reaches the target in every seed, the poor arm in none or at least 2x later (in steps: timings are not asserted).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow


def run_preset(tmp_path: Path, preset: str) -> list[tuple[dict[str, str], dict]]:
    """Run `experiment=<preset>` as a user does (W&B aside); every job's (overrides by key, summary.json)."""
    result = run_cli(
        ["trainspeed.train", "-m", f"experiment={preset}", "logger=csv", "hydra.sweep.dir=sweep"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = []
    for summary_path in sorted((tmp_path / "sweep").glob("*/summary.json")):
        summary = json.loads(summary_path.read_text())
        overrides = dict(o.split("=", 1) for o in summary["overrides"])
        jobs.append((overrides, summary))
    assert jobs and all(s["status"] in ("completed", "diverged") for _, s in jobs)
    return jobs


def arm(jobs: list[tuple[dict[str, str], dict]], **chosen: str) -> list[dict]:
    """The summaries of the jobs whose overrides include every key=value in `chosen` (one per seed)."""
    picked = [s for o, s in jobs if all(o.get(k.replace("__", ".")) == v for k, v in chosen.items())]
    assert len(picked) >= 2, f"{chosen}: {len(picked)} jobs"
    return picked


def steps(summaries: list[dict]) -> list[float]:
    return [s["time_to_target"]["steps"] if s["reached_target"] else float("inf") for s in summaries]


def assert_good_beats_poor(good: list[dict], poor: list[dict]) -> None:
    """Good reaches the target in every seed; poor in none, or with a median at least 2x the good arm's."""
    assert all(s["reached_target"] for s in good), steps(good)
    good_median, poor_median = statistics.median(steps(good)), statistics.median(steps(poor))
    assert not any(s["reached_target"] for s in poor) or poor_median >= 2 * good_median, (
        steps(good),
        steps(poor),
    )


def test_he2015_kaiming_trains_a_deep_relu_net_where_glorot_stalls(tmp_path):
    jobs = run_preset(tmp_path, "he2015")
    assert_good_beats_poor(arm(jobs, initializer="kaiming_normal"), arm(jobs, initializer="xavier_normal"))


def test_glorot2010_tanh_with_glorot_init_trains_where_sigmoid_with_the_standard_init_stalls(tmp_path):
    jobs = run_preset(tmp_path, "glorot2010")
    good = arm(jobs, activation="tanh", initializer="xavier_uniform")
    assert_good_beats_poor(good, arm(jobs, activation="sigmoid", initializer="default"))


def test_ioffe2015_batchnorm_trains_a_sigmoid_net_and_tolerates_a_large_learning_rate(tmp_path):
    jobs = run_preset(tmp_path, "ioffe2015")
    for lr in (
        "0.1",
        "1.0",
    ):  # batch norm trains at both; without it neither the usual nor the 10x rate works
        assert_good_beats_poor(
            arm(jobs, normalization="batchnorm", optimizer__lr=lr),
            arm(jobs, normalization="none", optimizer__lr=lr),
        )


def test_klambauer2017_selu_with_lecun_init_trains_a_very_deep_net_where_relu_fails(tmp_path):
    jobs = run_preset(tmp_path, "klambauer2017")
    good = arm(jobs, activation="selu", initializer="lecun_normal")
    assert_good_beats_poor(good, arm(jobs, activation="relu", initializer="default"))


def test_kingma2015_tuned_adam_is_among_the_fastest_and_plain_sgd_the_slowest(tmp_path):
    jobs = run_preset(tmp_path, "kingma2015")
    best: dict[str, float] = {}  # per optimizer, its median steps at its best learning rate
    for optimizer in {o["optimizer"] for o, _ in jobs}:
        lrs = {o["optimizer.lr"] for o, _ in jobs if o["optimizer"] == optimizer}
        best[optimizer] = min(
            statistics.median(steps(arm(jobs, optimizer=optimizer, optimizer__lr=lr))) for lr in lrs
        )
    assert best["adam"] <= 1.5 * min(best.values()), best  # among the fastest
    assert best["sgd"] == max(best.values()) and best["sgd"] >= 1.5 * best["adam"], (
        best
    )  # plain SGD the slowest
