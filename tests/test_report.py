"""The sweep report: ranking, LR picks, performance profile, files written, partial sweeps, CLI and Hydra hook."""

from __future__ import annotations

import csv
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from report_fixtures import RANKING_ORDER, lr_sweep, make_job, ranking_sweep

from trainspeed.report import NoJobsError, build_report
from trainspeed.report.__main__ import main
from trainspeed.report.aggregate import ConfigResult
from trainspeed.report.collect import MixedTargetsError, Run, read_metrics_csv
from trainspeed.report.hydra_callback import ReportOnSweepEnd
from trainspeed.report.plots import median_band, tails

CSV_HEADER = [
    "config",
    "runs",
    "reached",
    "pruned",
    "diverged",
    "failed",
    "median_seconds",
    "median_steps",
    "val_acc_best_median",
    "rank",
]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ranking(tmp_path_factory):
    sweep = ranking_sweep(tmp_path_factory.mktemp("ranking"))
    return build_report(sweep, print_table=False)


@pytest.fixture(scope="module")
def lr_report(tmp_path_factory):
    sweep = lr_sweep(tmp_path_factory.mktemp("lr"))
    return build_report(sweep, print_table=False)


def test_ranking_order_puts_all_reached_first_then_fraction_then_fewest_failed(ranking):
    assert [r.config for r in ranking.rows] == [f"optimizer={o}" for o in RANKING_ORDER]
    assert [r.rank for r in ranking.rows] == [1, 2, 3, 4, 5, 6]


def test_report_csv_header_and_rows_exact(ranking):
    with ranking.csv_path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][: len(CSV_HEADER)] == CSV_HEADER  # then the significance columns (test_significance.py)
    assert [row[: len(CSV_HEADER)] for row in rows[1:]] == [
        ["optimizer=nesterov", "3", "3", "0", "0", "0", "3", "30", "0.95", "1"],
        ["optimizer=adam", "3", "3", "0", "0", "0", "4", "40", "0.95", "2"],
        ["optimizer=rmsprop", "3", "2", "0", "0", "0", "1.25", "12.5", "0.95", "3"],
        ["optimizer=sgd", "3", "1", "0", "1", "1", "2", "20", "0.95", "4"],
        ["optimizer=adagrad", "3", "0", "0", "0", "0", "", "", "0.8", "5"],
        [
            "optimizer=lamb",
            "3",
            "0",
            "0",
            "0",
            "1",
            "",
            "",
            "0.85",
            "6",
        ],  # the unfinished job counts as failed
    ]


def test_pruned_runs_are_counted_apart_from_runs_that_never_reached(tmp_path):
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, ["optimizer=adam", "seed=0"], seconds=1.0)
    make_job(sweep, 1, ["optimizer=adam", "seed=1"], seconds=1.2)
    make_job(sweep, 2, ["optimizer=sgd", "seed=0"], budget=2.0, val_best=0.9)  # stopped by the budget
    make_job(sweep, 3, ["optimizer=sgd", "seed=1"], val_best=0.9)  # ran to the end, never reached
    report = build_report(sweep, print_table=False)
    sgd = report.rows[1]
    assert (sgd.config, sgd.reached, sgd.pruned, sgd.failed) == ("optimizer=sgd", 0, 1, 0)
    with report.csv_path.open(newline="") as f:
        rows = {row["config"]: row for row in csv.DictReader(f)}
    assert (rows["optimizer=sgd"]["pruned"], rows["optimizer=adam"]["pruned"]) == ("1", "0")
    md = report.md_path.read_text()
    pruned = md.split("## Pruned runs")[1].split("## ")[0]
    assert "| 2 | optimizer=sgd | 0 |" in pruned and "| 3 |" not in pruned
    assert "| 2 |" not in md.split("## Diverged, failed and unfinished runs")[1]  # not a problem run


def test_failed_diverged_and_unfinished_runs_are_counted_and_listed(ranking):
    assert sum(len(r.runs) for r in ranking.rows) == 18  # no job dropped
    sgd = ranking.rows[3]
    assert (sgd.diverged, sgd.failed, sgd.min_seconds, sgd.max_seconds) == (1, 1, 2.0, 2.0)
    assert ranking.rows[5].unfinished == 1
    md = ranking.md_path.read_text()
    problems = md.split("## Diverged, failed and unfinished runs")[1]
    assert "loss is nan at step 40" in problems
    assert (
        "RuntimeError: CUDA out of memory \\| trace" in problems
    )  # one table cell: pipe escaped, no newline
    assert "unfinished" in problems and "no summary.json" in problems
    assert len([line for line in problems.splitlines() if line.startswith("| ")]) == 1 + 3  # header + 3 runs


def test_performance_profile_values(ranking):
    # best per seed: s0 = 1.0 (rmsprop), s1 = 1.5 (rmsprop), s2 = 3.0 (nesterov)
    prof = ranking.profile
    assert prof.ratios["optimizer=nesterov"] == pytest.approx([2.0, 4.0, 1.0])
    assert prof.ratios["optimizer=rmsprop"][:2] == [1.0, 1.0] and math.isinf(
        prof.ratios["optimizer=rmsprop"][2]
    )
    cases = [  # (config, tau, rho)
        ("optimizer=nesterov", 1.0, 1 / 3),
        ("optimizer=nesterov", 1.99, 1 / 3),
        ("optimizer=nesterov", 2.0, 2 / 3),
        ("optimizer=nesterov", 4.0, 1.0),
        ("optimizer=adam", 1.0, 0.0),
        ("optimizer=adam", 2.0, 1 / 3),
        ("optimizer=adam", 3.0, 1.0),
        ("optimizer=rmsprop", 1.0, 2 / 3),
        ("optimizer=rmsprop", 100.0, 2 / 3),
        ("optimizer=sgd", 2.0, 1 / 3),
        ("optimizer=adagrad", 4.0, 0.0),
    ]
    for config, tau, rho in cases:
        assert prof.rho(config, tau) == pytest.approx(rho), (config, tau)
    # score = mean over runs of (τ_max - ratio) / (τ_max - 1), τ_max = 4
    assert prof.score("optimizer=nesterov") == pytest.approx((2 + 0 + 3) / 9)
    assert prof.score("optimizer=adam") == pytest.approx((1 + (4 - 4 / 1.5) + (4 - 5 / 3)) / 9)
    assert prof.score("optimizer=rmsprop") == pytest.approx(6 / 9)
    assert ranking.rows[0].profile_score == pytest.approx(5 / 9)
    assert (
        "| optimizer=nesterov | 0.333 | 0.333 | 0.333 | 0.667 | 0.667 | 1 | 0.556 |"
        in ranking.md_path.read_text()
    )


def test_all_files_written_and_html_self_contained(ranking):
    sweep = ranking.sweep_dir
    for name in ("report.csv", "report.md", "report.html"):
        assert (sweep / name).stat().st_size > 0
    names = {p.name for p in (sweep / "plots").glob("*.png")}
    assert names == {
        "val_metric_vs_time.png",
        "train_loss_vs_step.png",
        "time_to_target.png",
        "performance_profile.png",
    }  # (no lr axis -> no lr plot)
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in ranking.plot_paths)
    page = (sweep / "report.html").read_text()
    srcs = re.findall(r"""src\s*=\s*['"]([^'"]*)""", page)
    assert len(srcs) == 4 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"<link|<script|href\s*=|url\(", page)
    assert "optimizer=nesterov" in page and "CUDA out of memory" in page
    md = ranking.md_path.read_text()
    assert "![time to target](plots/time_to_target.png)" in md
    assert not list(sweep.glob("**/*.tmp"))  # atomic writes leave no temp file


def test_lr_pick_per_optimizer(lr_report):
    picks = {p.group: p for p in lr_report.lr_picks}
    assert set(picks) == {"optimizer=adam", "optimizer=sgd"}
    assert picks["optimizer=adam"].best_lr == "0.01"
    assert picks["optimizer=sgd"].best_lr == "0.1"  # not 0.01: faster median, but one seed missed the target
    assert [lr for lr, _ in picks["optimizer=sgd"].curve] == [0.001, 0.01, 0.1]
    assert lr_report.rows[0].config == "optimizer=adam optimizer.lr=0.01"
    assert [r.config for r in lr_report.rows[:4]] == [
        "optimizer=adam optimizer.lr=0.01",
        "optimizer=sgd optimizer.lr=0.1",
        "optimizer=adam optimizer.lr=0.001",
        "optimizer=sgd optimizer.lr=0.01",
    ]
    # both unreached: sgd lr=0.001 (val best 0.5) beats diverged adam lr=0.1 (val best 0.1)
    assert [r.config for r in lr_report.rows[4:]] == [
        "optimizer=sgd optimizer.lr=0.001",
        "optimizer=adam optimizer.lr=0.1",
    ]
    assert (lr_report.sweep_dir / "plots" / "lr_sensitivity.png").read_bytes().startswith(PNG_MAGIC)
    md = lr_report.md_path.read_text()
    assert "| optimizer=adam | 0.01 | optimizer=adam optimizer.lr=0.01 | 2/2 | 2.5 | 0.001, 0.01, 0.1 |" in md


def test_an_unfinished_or_failed_configuration_never_ranks_above_a_finished_one(tmp_path):
    """Nobody reached the target: the jobs that failed or never finished rank last, however far their partial
    metrics got; the footnote states that rule and what `failed` counts."""
    make_job(
        tmp_path, 0, ["optimizer=sgd", "seed=0"], summary=False, val_best=0.93
    )  # killed, metrics.csv left
    make_job(tmp_path, 1, ["optimizer=lion", "seed=0"], status="failed", error="boom", val_best=0.92)
    make_job(tmp_path, 2, ["optimizer=adam", "seed=0"], val_best=0.6)  # completed, below the target
    report = build_report(tmp_path, print_table=False)
    assert [(r.config, r.reached, r.failed, r.rank) for r in report.rows] == [
        ("optimizer=adam", 0, 0, 1),
        ("optimizer=sgd", 0, 1, 2),
        ("optimizer=lion", 0, 1, 3),
    ]
    footnote = " ".join(report.md_path.read_text().split("## Ranking")[1].split("\n\n")[2].split())
    assert "then the fraction of runs that failed (fewest first)" in footnote
    assert (
        "failed counts the jobs whose summary says failed and the jobs that never wrote a summary" in footnote
    )


def test_partial_sweep_with_missing_summary_and_empty_metrics_still_reports(tmp_path):
    make_job(tmp_path, 0, ["optimizer=adam", "seed=0"], seconds=2.0)
    make_job(tmp_path, 1, ["optimizer=sgd", "seed=0"], summary=False, metrics="empty")
    make_job(tmp_path, 2, ["optimizer=sgd", "seed=1"], status="failed", error="boom", metrics="truncated")
    (tmp_path / "3").mkdir()  # a job killed before Hydra wrote anything
    report = build_report(tmp_path, print_table=False)
    assert [(r.config, r.n_runs, r.reached, r.failed) for r in report.rows] == [
        ("optimizer=adam", 1, 1, 0),
        ("optimizer=sgd", 2, 0, 2),
        ("(overrides unknown)", 1, 0, 1),
    ]
    assert all(p.is_file() for p in report.paths)


def test_all_unreached_sweep_writes_files_with_empty_medians(tmp_path):
    for i, opt in enumerate(["adam", "sgd"]):
        make_job(tmp_path, i, [f"optimizer={opt}", "seed=0"], val_best=0.5 + 0.1 * i, metrics="none")
    report = build_report(tmp_path, print_table=False)
    rows = list(csv.DictReader(report.csv_path.open()))
    assert [(r["config"], r["median_seconds"], r["rank"]) for r in rows] == [
        ("optimizer=sgd", "", "1"),
        ("optimizer=adam", "", "2"),
    ]
    assert all(p.is_file() for p in report.paths)


def test_seed_only_sweep_is_one_configuration_named_by_its_overrides(tmp_path):
    for seed in range(3):
        make_job(tmp_path, seed, ["optimizer=adam", f"seed={seed}"], seconds=1.0 + seed)
    report = build_report(tmp_path, print_table=False)
    assert [(r.config, r.n_runs, r.median_seconds) for r in report.rows] == [("optimizer=adam", 3, 2.0)]


def test_metrics_csv_reader_pairs_time_with_val_acc(tmp_path):
    job = make_job(tmp_path, 0, ["seed=0"], seconds=4.0)
    series = read_metrics_csv(job / "metrics.csv")
    assert len(series["train/loss"]) == 10 and len(series["test/acc"]) == 1
    run = build_report(tmp_path, print_table=False).runs[0]
    points = run.paired("time/train_seconds", "val/acc")
    assert len(points) == 5 and points[0] == pytest.approx((1.6, 0.36))


def test_median_band_ends_where_the_shortest_run_ended_and_longer_runs_go_on_as_tails():
    curves = [[(0, 0.0), (10, 1.0)], [(0, 0.0), (10, 3.0)], [(0, 0.0), (5, 5.0)]]
    x, med, lo, hi = median_band(curves)
    assert x[0] == 0 and x[-1] == 5  # no run's last value is carried past its end
    assert (med[-1], lo[-1], hi[-1]) == pytest.approx((1.5, 0.5, 5.0))
    ends = tails(curves)
    assert [(list(tx), list(ty)) for tx, ty in ends] == [([5.0, 10.0], [0.5, 1.0]), ([5.0, 10.0], [1.5, 3.0])]


def test_lr_sensitivity_marks_for_unreached_lrs_never_coincide():
    """Two optimizers that both missed the target at the same learning rates: every × has its own place."""
    from trainspeed.report.aggregate import LRPick
    from trainspeed.report.plots import missed_marks

    def config(opt: str, lr: str, seconds: float | None) -> ConfigResult:
        run = Run(job="0", path=Path("."), status="completed", overrides=None, seed="0")
        run.reached, run.seconds = seconds is not None, seconds
        return ConfigResult(
            f"optimizer={opt} optimizer.lr={lr}", (f"optimizer={opt}", f"optimizer.lr={lr}"), [run]
        )

    picks = []
    for opt in ("adam", "sgd", "lion"):
        curve = [(float(lr), config(opt, lr, s)) for lr, s in (("0.001", None), ("0.01", 2.0), ("1.0", None))]
        picks.append(LRPick(group=f"optimizer={opt}", lr_key="optimizer.lr", best=curve[1][1], curve=curve))
    marks = [point for group in missed_marks(picks, ceiling=10.0, row=1.0) for point in group]
    assert len(marks) == 6 and len(set(marks)) == 6
    assert len({y for _, y in marks}) == 3 and min(y for _, y in marks) > 10.0  # one row per group, above


def test_terminal_table_printed(tmp_path, capsys):
    make_job(tmp_path, 0, ["optimizer=adam", "seed=0"], seconds=2.0)
    build_report(tmp_path)
    out = capsys.readouterr().out
    assert "optimizer=adam" in out and "report.md" in out


@pytest.mark.parametrize("make", [lambda p: p / "missing", lambda p: p])  # no folder; a folder with no job
def test_cli_exit_2_when_no_sweep(tmp_path, capsys, make):
    sweep = make(tmp_path)
    assert main([str(sweep)]) == 2
    err = capsys.readouterr().err
    assert str(sweep) in err and len(err.strip().splitlines()) == 1
    with pytest.raises(NoJobsError):
        build_report(sweep)


@pytest.mark.parametrize("tau_max", ["-1", "1", "0.5", "inf", "nan", "four"])
def test_cli_refuses_a_profile_bound_that_is_not_above_1(tmp_path, capsys, tau_max):
    make_job(tmp_path, 0, ["optimizer=adam", "seed=0"], seconds=2.0)
    with pytest.raises(SystemExit) as refused:
        main([str(tmp_path), "--tau-max", tau_max])
    assert refused.value.code == 2
    assert (
        f"--tau-max: '{tau_max}' is not valid; accepted: a finite number above 1" in capsys.readouterr().err
    )
    assert not (tmp_path / "report.md").exists()


def test_cli_exit_0_writes_report(tmp_path):
    make_job(tmp_path, 0, ["optimizer=adam", "seed=0"], seconds=2.0)
    make_job(tmp_path, 1, ["optimizer=sgd", "seed=0"], seconds=3.0)
    env = {**os.environ, "COLUMNS": "200"}  # a wide terminal, so the table does not fold config names
    cmd = [sys.executable, "-m", "trainspeed.report", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "optimizer=adam" in done.stdout
    assert (tmp_path / "report.html").is_file() and (tmp_path / "report.csv").is_file()


def test_hydra_callback_writes_report_and_never_raises(tmp_path, capsys):
    make_job(tmp_path, 0, ["optimizer=adam", "seed=0"], seconds=2.0)
    ReportOnSweepEnd(print_table=False).on_multirun_end(
        OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    )
    assert (tmp_path / "report.md").is_file()
    missing = tmp_path / "nope"
    ReportOnSweepEnd().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(missing)}}}))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning:") and str(missing) in err[0]
    ReportOnSweepEnd().on_multirun_end(OmegaConf.create({}))  # no hydra node at all: still no exception


HYDRA_APP = """
import json
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig


@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    out = Path(HydraConfig.get().runtime.output_dir)
    ttt = {"metric": "val/acc", "target": 0.9, "seconds": float(cfg.t), "steps": 10}
    summary = {"status": "completed", "reached_target": True, "time_to_target": ttt, "metrics": {}}
    (out / "summary.json").write_text(json.dumps(summary))


main()
"""


def test_hydra_multirun_end_writes_report(tmp_path):
    """A real Hydra multirun calls the callback with hydra.sweep.dir set."""
    (tmp_path / "app.py").write_text(HYDRA_APP)
    sweep = tmp_path / "sweep"
    callback = "+hydra.callbacks.report._target_=trainspeed.report.hydra_callback.ReportOnSweepEnd"
    cmd = [sys.executable, "app.py", "-m", "+t=2,1", "+seed=0,1", f"hydra.sweep.dir={sweep}", callback]
    done = subprocess.run(
        cmd, cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}
    )
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    rows = list(csv.DictReader((sweep / "report.csv").open()))
    assert [(r["config"], r["runs"], r["median_seconds"], r["rank"]) for r in rows] == [
        ("+t=1", "2", "1", "1"),
        ("+t=2", "2", "2", "2"),
    ]


def test_runs_timed_to_different_targets_are_not_ranked_together(tmp_path, capsys):
    # seconds to 0.9 and seconds to 0.95 are two measurements: one ranking of both would be meaningless
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, ["data=digits", "seed=0"], seconds=1.0, target=0.95)
    make_job(sweep, 1, ["data=synthetic", "seed=0"], seconds=2.0, target=0.9)
    make_job(sweep, 2, ["data=other", "seed=0"], status="failed", error="refused", target=1.5)  # not measured
    before = sorted(p.relative_to(sweep) for p in sweep.rglob("*"))
    with pytest.raises(MixedTargetsError, match=r"val/acc ≥ 0.95: jobs 0; val/acc ≥ 0.9: jobs 1"):
        build_report(sweep)
    assert main([str(sweep)]) == 2
    err = capsys.readouterr().err
    assert "timed to different targets" in err and "target.value=" in err
    assert sorted(p.relative_to(sweep) for p in sweep.rglob("*")) == before  # no report file written


def test_a_loss_target_is_stated_as_at_most(tmp_path):
    sweep = tmp_path / "sweep"
    for i in range(2):
        make_job(sweep, i, [f"x={i}", "seed=0"], seconds=1.0 + i, target=0.3, metric="val/loss")
    build_report(sweep, print_table=False)
    assert "target: val/loss ≤ 0.3." in (sweep / "report.md").read_text()


def test_an_unreadable_summary_is_named_on_the_console_too(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, ["x=a", "seed=0"], seconds=1.0)
    make_job(sweep, 1, ["x=b", "seed=0"], seconds=2.0)
    (sweep / "1" / "summary.json").write_text('{"status": "compl')  # cut short
    build_report(sweep)
    err = capsys.readouterr().err
    assert "warning: job 1: " in err and "summary.json" in err
    assert main([str(sweep), "--quiet"]) == 0  # --quiet hides the table, not the warning
    captured = capsys.readouterr()
    assert "warning: job 1: " in captured.err and "optimizer" not in captured.out


def test_a_sweep_whose_jobs_all_failed_reports_without_a_plotting_warning(tmp_path):
    """matplotlib warned "No artists with labels found to put in legend" on the console."""
    import warnings

    for job, lr in enumerate(["-1", "0"]):
        make_job(tmp_path, job, [f"optimizer.lr={lr}", "seed=0"], status="failed", error="refused")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = build_report(tmp_path, print_table=False)
    assert [int(r.failed) for r in report.rows] == [1, 1] and (tmp_path / "report.html").is_file()
