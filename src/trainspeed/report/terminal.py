"""The ranking as a rich table in the terminal."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from trainspeed.report import significance_text
from trainspeed.report.aggregate import ConfigResult
from trainspeed.report.render import fmt, fmt_range
from trainspeed.report.significance import Significance


def ranking_table(ranked: list[ConfigResult], title: str, significance: Significance | None = None) -> Table:
    table = Table(title=title)
    for name in (
        "rank",
        "config",
        "runs",
        "reached",
        "pruned",
        "diverged",
        "failed",
        "median s (reached)",
        "min–max s",
        "median steps (reached)",
        "best val acc",
    ):
        table.add_column(name, justify="left" if name == "config" else "right", overflow="fold")
    if significance is not None:
        for name in significance_text.TERMINAL_HEADERS:
            table.add_column(name, justify="right", overflow="fold")
    for c in ranked:
        # red: never reached in any run; a configuration stopped by the search's budget was slow, not broken
        style = None if c.all_reached else ("red" if c.reached == 0 and c.pruned == 0 else "yellow")
        table.add_row(
            str(c.rank),
            c.config,
            str(c.n_runs),
            str(c.reached),
            str(c.pruned),
            str(c.diverged),
            str(c.failed),
            fmt(c.median_seconds),
            fmt_range(c.min_seconds, c.max_seconds),
            fmt(c.median_steps),
            fmt(c.val_acc_best_median),
            *(significance_text.terminal_cells(significance, c) if significance is not None else []),
            style=style,
        )
    return table


def print_ranking(
    ranked: list[ConfigResult],
    sweep_dir: Path,
    report_path: Path,
    console: Console | None = None,
    significance: Significance | None = None,
) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal and "COLUMNS" not in os.environ:
            console = Console(width=160)  # logs and pipes: don't fold config names into an 80-column table
    console.print(ranking_table(ranked, f"time to target — {sweep_dir}", significance))
    if significance is not None:
        console.print(significance_text.tied_line(significance), soft_wrap=True)
        for line in significance.disagreements:
            console.print(f"seconds and steps disagree: {line}", soft_wrap=True)
    console.print(f"report: {report_path}", soft_wrap=True)
