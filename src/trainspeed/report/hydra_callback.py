"""Write the sweep report when a Hydra multirun ends (wired in conf/train.yaml under hydra.callbacks)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


class ReportOnSweepEnd(Callback):
    """Builds the report for `hydra.sweep.dir` after the last job. Never raises: the sweep's results matter more
    than its report, which can be rebuilt with `python -m trainspeed.report SWEEP_DIR`."""

    def __init__(self, print_table: bool = True) -> None:
        self.print_table = print_table

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = None
        try:
            from trainspeed.report.build import build_report  # imported here: sweeps start without matplotlib

            sweep_dir = OmegaConf.select(config, "hydra.sweep.dir", throw_on_missing=True)
            if sweep_dir is None:
                raise ValueError("hydra.sweep.dir is not set")
            build_report(Path(str(sweep_dir)), print_table=self.print_table)
        except Exception as e:  # a report failure must never fail the sweep: one line, then go on
            where = f" for {sweep_dir}" if sweep_dir else ""
            message = f"{type(e).__name__}: {e}".replace("\n", " ")
            print(f"warning: trainspeed report{where} was not written: {message}", file=sys.stderr)
