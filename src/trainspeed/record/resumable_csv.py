"""metrics.csv that survives a resume: Lightning's CSVLogger, keeping the rows logged before the checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger

from trainspeed.record.run_folder import METRICS_FILE, read_metrics_rows


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger, except that a resumed run keeps its history.

    Lightning deletes an existing metrics.csv when a logger opens a folder; a resumed run would lose every row
    logged before the kill. With `resume_step` set (the checkpoint's global step), the rows logged before that step
    are kept and the run's later rows, and any test row, are dropped (the resumed run logs them again).
    """

    def __init__(self, *args, resume_step: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.resume_step = resume_step

    @property
    def experiment(self):
        if self._experiment is not None:
            return self._experiment
        path = Path(self.log_dir) / METRICS_FILE
        kept: list[dict[str, str]] = []
        if self.resume_step is not None:
            kept = [
                row
                for row in read_metrics_rows(path)
                if float(row["step"]) < self.resume_step
                and not any(value and str(key).startswith("test/") for key, value in row.items())
            ]
        writer = super().experiment  # this deletes the old file
        if kept:
            keys = sorted({k for row in kept for k, v in row.items() if v not in ("", None)})
            writer.metrics_keys = keys
            with path.open("w", newline="") as handle:
                out = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
                out.writeheader()
                out.writerows(kept)
        return writer
