"""metrics.csv that survives a resume, and a crash: Lightning's CSVLogger, keeping the rows logged before the
checkpoint, with every rewrite of the file made atomic."""

from __future__ import annotations

import csv
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from trainspeed.record.atomic import replacing
from trainspeed.record.run_folder import METRICS_FILE, read_metrics_rows


def _write_rows(path: Path, keys: list[str], rows: list[dict[str, str]]) -> None:
    """metrics.csv with these rows, replacing the file in one rename: a kill or a full disk while writing leaves
    the previous file whole."""
    with replacing(path) as partial, partial.open("w", newline="") as handle:
        out = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
        out.writeheader()
        out.writerows(rows)


class AtomicRewriteWriter(ExperimentWriter):
    """Lightning's metrics.csv writer, except where it rewrites the whole file. It does that in place: a new column
    (the first validation, the time-to-target row, the test row) reopens the file for writing, truncating it, and
    copies every earlier row back; a kill or a full disk in between loses the run's history. Here the new file is
    written beside it and renamed over it. Rows are still appended in place (a kill mid-row leaves a partial last
    line, which the readers skip).

    `kept`: a resumed run's rows logged before its checkpoint; the file becomes exactly these rows (atomically,
    where Lightning would delete the file first). None: a new run, as Lightning does it."""

    def __init__(self, log_dir: str, kept: list[dict[str, str]] | None = None) -> None:
        self._kept = kept
        super().__init__(log_dir)
        if kept is None:
            return
        path = Path(self.metrics_file_path)
        if kept:
            self.metrics_keys = sorted({k for row in kept for k, v in row.items() if v not in ("", None)})
            _write_rows(path, self.metrics_keys, kept)
        else:
            path.unlink(missing_ok=True)

    def _check_log_dir_exists(self) -> None:
        if self._kept is None:  # a new run: Lightning deletes an earlier metrics.csv
            super()._check_log_dir_exists()

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        path = Path(self.metrics_file_path)
        _write_rows(path, list(fieldnames), read_metrics_rows(path))


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger, except that a resumed run keeps its history and the file is never rewritten in place.

    Lightning deletes an existing metrics.csv when a logger opens a folder; a resumed run would lose every row
    logged before the kill. With `resume_step` set (the checkpoint's global step), the rows logged before that step
    are kept and the run's later rows, and any test row, are dropped (the resumed run logs them again).
    """

    def __init__(self, *args, resume_step: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.resume_step = resume_step

    @property
    def experiment(self) -> AtomicRewriteWriter:
        if self._experiment is not None:
            return self._experiment
        kept = None
        if self.resume_step is not None:
            kept = [
                row
                for row in read_metrics_rows(Path(self.log_dir) / METRICS_FILE)
                if float(row["step"]) < self.resume_step
                and not any(value and str(key).startswith("test/") for key, value in row.items())
            ]
        self._fs.makedirs(self.root_dir, exist_ok=True)  # what Lightning's property does before the writer
        self._experiment = AtomicRewriteWriter(self.log_dir, kept)
        return self._experiment
