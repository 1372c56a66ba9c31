"""`python -m trainspeed.reproduce RUN_DIR [overrides]`: re-run a run from its folder and compare the results.

The run is re-launched with the overrides saved in RUN_DIR/.hydra/overrides.yaml (plus any given here) into a new
folder, in a fresh process exactly as a user would type it, and in the run mode the original was made in: a job of
a sweep is replayed as a sweep job (same stop rule, same validation cadence; see trainspeed.run_mode). Its
metrics.csv and summary.json are then compared with the original's: "reproduced exactly", or a table of what
differs (exit 1 unless --report-only), followed by what was compared and what could not be. Timing values
(seconds) are never compared: they measure the machine, not the run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from trainspeed.errors import ConfigError, TrainspeedError
from trainspeed.record.compare import Comparison, compare_runs, environment_changes, input_differences
from trainspeed.record.run_folder import launched_from
from trainspeed.record.summary import read_summary
from trainspeed.resume import relaunch_overrides

console = Console(stderr=False)


def _print_differences(comparison: Comparison, original: Path, rerun: Path) -> None:
    table = Table(title=f"differences: {original.name} vs {rerun.name}")
    for column in ("where", "metric", "step", "original", "re-run"):
        table.add_column(column)
    for diff in comparison.differences[:50]:
        step = str(diff.step if diff.step is not None else "")
        table.add_row(diff.where, diff.metric, step, str(diff.original), str(diff.rerun))
    console.print(table)
    if len(comparison.differences) > 50:
        console.print(f"... and {len(comparison.differences) - 50} more differences")


def _print_scope(comparison: Comparison) -> None:
    for item in comparison.compared:
        console.print(f"compared: {item}")
    for item in comparison.not_compared:
        console.print(f"[yellow]not compared:[/yellow] {item}")
    console.print("not compared: timings (seconds), which measure the machine, not the run")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainspeed.reproduce", description=__doc__.splitlines()[0]
    )
    parser.add_argument("run_dir", type=Path, help="the run folder to reproduce")
    parser.add_argument(
        "overrides", nargs="*", help="extra overrides on top of the saved ones (e.g. optimizer=adam)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for the new run (default: outputs/reproduced/...)"
    )
    parser.add_argument("--report-only", action="store_true", help="report differences but exit 0")
    args = parser.parse_args(argv)

    run_dir = args.run_dir.resolve()
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out = (args.out or Path("outputs") / "reproduced" / f"{run_dir.name}_{stamp}").resolve()
    try:
        summary = read_summary(run_dir)
        overrides = relaunch_overrides(run_dir, summary, key="run_dir")
        if (
            summary is None
        ):  # killed before its record: the comparison would blame the re-run for what it lacks
            raise ConfigError(
                "run_dir",
                str(run_dir),
                f"a run with its record: `python -m trainspeed.train resume={run_dir}` finishes this one first",
                problem="it has no summary.json (killed before it was written), so there is nothing to compare with",
            )
        if out.exists() and (not out.is_dir() or any(out.iterdir())):  # never a re-run over a record
            raise ConfigError("--out", str(out), "a folder that does not exist yet, or an empty one")
    except TrainspeedError as err:
        console.print(f"trainspeed: error: {err}", soft_wrap=True, markup=False)
        return 2
    for warning in environment_changes(summary):
        console.print(f"[yellow]warning:[/yellow] {warning}")
    command = [sys.executable, "-m", "trainspeed.train", *overrides, *args.overrides, f"hydra.run.dir={out}"]
    # from the folder the run was launched from, so that its relative paths (data.root, model.weights) name the
    # same files as they did (the overrides keep them as typed)
    origin = launched_from(run_dir)
    cwd = origin if origin is not None and origin.is_dir() else None
    if cwd is not None and cwd.resolve() != Path.cwd().resolve():
        console.print(
            f"in {cwd}, the folder the run was launched from (its relative paths are read from there)"
        )
    console.print("re-running: " + " ".join(["python", *command[1:]]))
    result = subprocess.run(command, cwd=cwd)
    if result.returncode != 0:
        console.print(f"[red]the re-run failed (exit code {result.returncode}); its folder: {out}[/red]")
        return result.returncode

    try:
        comparison = compare_runs(run_dir, out)
    except TrainspeedError as err:
        console.print(f"trainspeed: error: {err}", soft_wrap=True, markup=False)
        return 2
    if not comparison.differences:
        exact = (
            "reproduced exactly" if not comparison.not_compared else "no difference in what could be compared"
        )
        console.print(f"[green]{exact}[/green]: {run_dir} == {out}")
        _print_scope(comparison)
        return 0
    _print_differences(comparison, run_dir, out)
    _print_scope(comparison)
    inputs = input_differences(comparison)
    if inputs:
        console.print(
            f"[red]the re-run read other {' and '.join(inputs)} than the original[/red] (their fingerprints "
            "differ): a changed file, or a data.root / model.weights that names another file here (an unset "
            "variable such as $TRAINSPEED_DATA, another folder)"
        )
    changed = " (the extra overrides changed the run)" if args.overrides else ""
    console.print(f"[red]not reproduced[/red]: {len(comparison.differences)} values differ{changed}")
    return 0 if args.report_only or args.overrides else 1


if __name__ == "__main__":
    raise SystemExit(main())
