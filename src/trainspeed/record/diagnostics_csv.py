"""diagnostics.csv, the per-layer statistics of a run: its columns, how rows are appended, how they are read.

One row per layer and diagnostic step. The file only grows: a resumed run appends the steps it has not written yet
and never rewrites earlier rows (the rows a killed run wrote after its last checkpoint stay, and are not written a
second time). A run that starts from step 0 in a folder that holds the file (an attempt killed before its first
checkpoint, run again) first sets the old file aside as diagnostics.1.csv. Readers skip a truncated last line. No torch here: the report reads this file too.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path

FILENAME = "diagnostics.csv"


@dataclass(frozen=True)
class LayerRow:
    """One layer at one diagnostic step; a statistic that does not apply (no ReLU after the layer, a frozen
    weight) is None, an empty cell in the file."""

    step: int
    position: int  # the layer's place in the network, 0 = nearest the input
    layer: str  # its module path in the network, e.g. body.1
    act_mean: float | None = None
    act_std: float | None = None
    dead_fraction: float | None = None
    saturated_fraction: float | None = None
    grad_norm: float | None = None
    update_ratio: float | None = None

    def stat(self, name: str) -> float | None:
        return getattr(self, name)


COLUMNS = tuple(f.name for f in fields(LayerRow))
STATS = COLUMNS[3:]  # the statistics, in column order (what each one means: README, "Diagnostics")


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.7g}" if isinstance(value, float) else str(value)  # inf stays: a signal that exploded


def _number(text: str | None) -> float | None:
    if text in (None, ""):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def read_rows(path: Path) -> list[LayerRow]:
    """Every complete row of a diagnostics.csv, in file order; an unreadable file gives no rows."""
    rows: list[LayerRow] = []
    try:
        with Path(path).open(newline="") as handle:
            for raw in csv.DictReader(handle):
                step, position = _number(raw.get("step")), _number(raw.get("position"))
                if step is None or position is None or not raw.get("layer") or None in raw.values():
                    continue  # a line cut short by a kill
                stats = {name: _number(raw.get(name)) for name in STATS}
                rows.append(LayerRow(int(step), int(position), str(raw["layer"]), **stats))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
    return rows


def last_step(path: Path) -> int | None:
    """The highest step the file holds (None when it holds none): a resumed run writes only later steps."""
    steps = [row.step for row in read_rows(path)]
    return max(steps) if steps else None


def set_aside(path: Path) -> Path:
    """Rename the file to the first free `<name>.<n>.csv` (a run started afresh in the folder of an attempt that
    left no checkpoint: its rows are kept, not mixed with the new run's) and return the new path."""
    path = Path(path)
    n = 1
    while (kept := path.with_name(f"{path.stem}.{n}{path.suffix}")).exists():
        n += 1
    path.rename(kept)
    return kept


class RowWriter:
    """Appends rows to the file, which stays open between diagnostic steps (an open and a close per step would
    cost more than the rows); each batch of rows reaches the operating system before `append` returns."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._handle = None
        self._writer = None

    def append(self, rows: Iterable[LayerRow]) -> None:
        if self._handle is None:
            self._open()
        self._writer.writerows([_cell(getattr(row, name)) for name in COLUMNS] for row in rows)
        self._handle.flush()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.is_file() or self.path.stat().st_size == 0
        cut = False
        if not fresh:
            with self.path.open("rb") as handle:
                handle.seek(-1, 2)
                cut = (
                    handle.read(1) != b"\n"
                )  # a kill mid-line: start a new line, the cut one is skipped on read
        self._handle = self.path.open("a", newline="")
        self._writer = csv.writer(self._handle, lineterminator="\n")
        if fresh:
            self._writer.writerow(COLUMNS)
        elif cut:
            self._handle.write("\n")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = self._writer = None


def append_rows(path: Path, rows: Iterable[LayerRow]) -> None:
    """Append rows (with the header when the file is new) and close the file."""
    writer = RowWriter(path)
    try:
        writer.append(rows)
    finally:
        writer.close()
