"""metrics.csv that survives a resume: Lightning's CSVLogger, keeping the rows logged before the checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger, except that a resumed run keeps its history.

    Lightning deletes an existing metrics.csv when a logger opens a folder; a resumed run would lose every row
    logged before the kill. With `resume_step` set (the checkpoint's global step), the rows logged before that step
    are kept and the run's later rows are dropped (the resumed run logs them again).
    """

    def __init__(self, *args, resume_step: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.resume_step = resume_step

    @property
    def experiment(self):
        if self._experiment is not None:
            return self._experiment
        path = Path(self.log_dir) / "metrics.csv"
        kept: list[dict[str, str]] = []
        if self.resume_step is not None and path.is_file():
            with path.open(newline="") as handle:
                kept = [row for row in csv.DictReader(handle) if int(float(row["step"])) < self.resume_step]
        writer = super().experiment  # this deletes the old file
        if kept:
            keys = sorted({k for row in kept for k, v in row.items() if v not in ("", None)})
            writer.metrics_keys = keys
            with path.open("w", newline="") as handle:
                out = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
                out.writeheader()
                out.writerows(kept)
        return writer
