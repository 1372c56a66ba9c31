"""`python -m trainspeed.reproduce RUN_DIR [overrides]`: re-run a run from its folder and compare the results.

The run is re-launched with the overrides saved in RUN_DIR/.hydra/overrides.yaml (plus any given here) into a new
folder, in a fresh process exactly as a user would type it. Its metrics.csv and summary.json are then compared with
the original's: "reproduced exactly", or a table of what differs (exit 1 unless --report-only). Timing values
(seconds) are never compared: they measure the machine, not the run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from trainspeed.record.compare import compare_runs, environment_changes

console = Console(stderr=False)


def saved_overrides(run_dir: Path) -> list[str]:
    """The overrides the run was launched with, minus those that only place or resume it."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        raise SystemExit(f"trainspeed: error: {run_dir} is not a run folder (no .hydra/overrides.yaml)")
    overrides = yaml.safe_load(path.read_text()) or []
    return [o for o in overrides if not o.split("=", 1)[0].lstrip("+~").startswith(("hydra.", "resume"))]


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
    overrides = saved_overrides(run_dir)
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out = (args.out or Path("outputs") / "reproduced" / f"{run_dir.name}_{stamp}").resolve()
    for warning in environment_changes(run_dir):
        console.print(f"[yellow]warning:[/yellow] {warning}")
    command = [sys.executable, "-m", "trainspeed.train", *overrides, *args.overrides, f"hydra.run.dir={out}"]
    console.print("re-running: " + " ".join(["python", *command[1:]]))
    result = subprocess.run(command)
    if result.returncode != 0:
        console.print(f"[red]the re-run failed (exit code {result.returncode}); its folder: {out}[/red]")
        return result.returncode

    differences = compare_runs(run_dir, out)
    if not differences:
        console.print(f"[green]reproduced exactly[/green]: {run_dir} == {out}")
        return 0
    table = Table(title=f"differences: {run_dir.name} vs {out.name}")
    for column in ("where", "metric", "step", "original", "re-run"):
        table.add_column(column)
    for diff in differences[:50]:
        table.add_row(
            diff.where,
            diff.metric,
            str(diff.step if diff.step is not None else ""),
            str(diff.original),
            str(diff.rerun),
        )
    console.print(table)
    if len(differences) > 50:
        console.print(f"... and {len(differences) - 50} more differences")
    changed = " (the extra overrides changed the run)" if args.overrides else ""
    console.print(f"[red]not reproduced[/red]: {len(differences)} values differ{changed}")
    return 0 if args.report_only or args.overrides else 1


if __name__ == "__main__":
    raise SystemExit(main())
