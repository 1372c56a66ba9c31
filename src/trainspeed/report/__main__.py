"""`python -m trainspeed.report SWEEP_DIR`: write the comparison report of a sweep and print its ranking.

Exit status: 0 when the report was written, 2 when SWEEP_DIR is missing or holds no job, or its runs were timed to
different targets (nothing is written then).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from trainspeed.errors import TrainspeedError
from trainspeed.report.build import build_report
from trainspeed.report.profile import TAU_MAX


def _tau_max(text: str) -> float:
    """--tau-max: the profile plots ratios to the fastest, which start at 1, up to this finite bound above 1."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not valid; accepted: a finite number above 1 (e.g. 4)")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainspeed.report",
        description="Rank the configurations of a sweep by time to target and write report.md/.html/.csv "
        "and plots/ into the sweep folder.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the sweep folder (outputs/multirun/<timestamp>)")
    parser.add_argument("--quiet", action="store_true", help="do not print the ranking table")
    parser.add_argument(
        "--tau-max", type=_tau_max, default=TAU_MAX, help="upper end of the performance profile (above 1)"
    )
    args = parser.parse_args(argv)
    try:
        report = build_report(args.sweep_dir, print_table=not args.quiet, tau_max=args.tau_max)
    except TrainspeedError as e:  # NoJobsError, MixedTargetsError
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.quiet:
        print(f"report: {report.md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
