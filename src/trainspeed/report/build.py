"""build_report: sweep folder -> ranked configurations + report.csv / report.md / report.html / plots/*.png."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from trainspeed.report import diagnostics_plots, document, plots, render, significance, study
from trainspeed.report.aggregate import (
    ConfigResult,
    LRPick,
    group_configs,
    lr_key_of,
    lr_picks,
    rank,
    varying_keys,
)
from trainspeed.report.collect import Run, collect, common_target, unreadable
from trainspeed.report.profile import TAU_MAX, PerformanceProfile, performance_profile
from trainspeed.report.terminal import print_ranking


@dataclass
class Report:
    """What build_report found and wrote."""

    sweep_dir: Path
    rows: list[ConfigResult]  # ranked, best first
    runs: list[Run]
    lr_picks: list[LRPick]
    profile: PerformanceProfile
    significance: significance.Significance
    csv_path: Path
    md_path: Path
    html_path: Path
    plot_paths: list[Path] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        return [self.csv_path, self.md_path, self.html_path, *self.plot_paths]


def _target(runs: list[Run]) -> tuple[float | None, str]:
    """(target value, metric) for the curves: they plot a validation metric against time (a non-validation target
    falls back to val/acc, without the target's line)."""
    metric, _, value = common_target(runs) or ("val/acc", "max", None)
    return (value, metric) if metric.startswith("val/") else (None, "val/acc")


def build_report(sweep_dir: Path, print_table: bool = True, tau_max: float = TAU_MAX) -> Report:
    """Read every job of `sweep_dir`, rank its configurations and write the report files into it.

    Works on unfinished or partly failed sweeps. Raises NoJobsError when the folder is missing or holds no job,
    MixedTargetsError (before writing anything) when its runs were timed to different targets.
    """
    sweep_dir = Path(sweep_dir)
    runs = collect(sweep_dir)
    common_target(runs)
    ranked = rank(group_configs(runs))
    profile = performance_profile(ranked, tau_max)
    picks = lr_picks(ranked, lr_key_of(runs))
    sig = significance.compare(ranked)
    target, metric = _target(runs)
    images = {**plots.all_plots(ranked, profile, picks, target, metric), **study.study_plots(sweep_dir)}
    diagnostics = diagnostics_plots.sweep_figures(ranked)  # heatmaps of the runs that wrote diagnostics.csv
    images.update(diagnostics)
    plot_paths = [render.write_atomic(sweep_dir / "plots" / name, png) for name, png in images.items()]

    blocks = document.blocks(sweep_dir, runs, ranked, picks, profile, varying_keys(runs), list(images), sig)
    blocks += study.study_blocks(sweep_dir, list(images))  # an Optuna search's study (none for a grid sweep)
    blocks += diagnostics_plots.report_blocks(diagnostics)
    csv_path = render.write_atomic(sweep_dir / "report.csv", render.csv_text(ranked, sig))
    md_path = render.write_atomic(sweep_dir / "report.md", render.markdown(blocks))
    page = render.html_page(blocks, images, title=f"Sweep report: {sweep_dir.name}")
    html_path = render.write_atomic(sweep_dir / "report.html", page)
    if print_table:
        print_ranking(ranked, sweep_dir, md_path, significance=sig)
    for run in unreadable(runs):  # counted as failed: say why, not only in report.md (also without the table)
        print(f"warning: job {run.job}: {run.error}", file=sys.stderr)
    return Report(
        sweep_dir=sweep_dir,
        rows=ranked,
        runs=runs,
        lr_picks=picks,
        profile=profile,
        significance=sig,
        csv_path=csv_path,
        md_path=md_path,
        html_path=html_path,
        plot_paths=plot_paths,
    )
