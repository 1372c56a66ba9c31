"""`python -m trainspeed.diagnose RUN_DIR`: the report's layer-diagnostics heatmaps for one run folder.

Reads RUN_DIR/diagnostics.csv (written by `callbacks=diagnostics`) and writes RUN_DIR/plots/diagnostics_*.png.
Exit status: 0 when the plots were written, 2 when the folder has no (readable) diagnostics.csv.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainspeed.record.diagnostics_csv import FILENAME, read_rows
from trainspeed.record.run_folder import read_overrides
from trainspeed.report.diagnostics_plots import figures
from trainspeed.report.render import write_atomic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainspeed.diagnose",
        description="Draw heatmaps (layer x step) of the per-layer diagnostics of one run folder.",
    )
    parser.add_argument(
        "run_dir", type=Path, help="a run folder holding diagnostics.csv (callbacks=diagnostics)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write the PNGs (default: RUN_DIR/plots)"
    )
    args = parser.parse_args(argv)
    path = args.run_dir / FILENAME
    if not path.is_file():
        print(
            f"error: {args.run_dir} has no {FILENAME} (record one by training with callbacks=diagnostics)",
            file=sys.stderr,
        )
        return 2
    rows = read_rows(path)
    if not rows:
        print(f"error: {path} holds no complete row", file=sys.stderr)
        return 2
    title = " ".join(read_overrides(args.run_dir) or []) or args.run_dir.name
    out = args.out or args.run_dir / "plots"
    for name, png in figures([(title, [rows])]).items():
        print(write_atomic(out / name, png))
    return 0


if __name__ == "__main__":
    sys.exit(main())
