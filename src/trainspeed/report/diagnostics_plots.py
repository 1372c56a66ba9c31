"""Heatmaps of the per-layer diagnostics (diagnostics.csv): layer x step, one panel per configuration.

Every panel of a figure shares one colour scale, so a signal that fades layer after layer under one initializer
and holds under another is seen side by side. Drawn on the Agg canvas directly (no pyplot), like plots.py.
"""

from __future__ import annotations

import io
import math
import textwrap
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from trainspeed.record.diagnostics_csv import FILENAME, LayerRow, read_rows
from trainspeed.report.aggregate import ConfigResult

MAX_DECADES = 8  # a log scale spans at most this many powers of ten below the largest value


@dataclass(frozen=True)
class Heatmap:
    """What one figure shows: a statistic (or, for `inactive`, whichever of dead / saturated applies)."""

    file: str
    title: str
    log: bool


HEATMAPS = {
    "act_std": Heatmap("diagnostics_act_std.png", "std of each layer's output", log=True),
    "grad_norm": Heatmap("diagnostics_grad_norm.png", "norm of each layer's weight gradient", log=True),
    "update_ratio": Heatmap("diagnostics_update_ratio.png", "update / weight norm of each step", log=True),
    "inactive": Heatmap(
        "diagnostics_inactive.png", "dead (ReLU family) or saturated (sigmoid, tanh) fraction", log=False
    ),
}


@dataclass(frozen=True)
class Grid:
    """A statistic as a layers x steps array (NaN where not recorded), median over the runs it came from."""

    layers: list[str]
    steps: list[int]
    values: np.ndarray
    runs: int


def _value(row: LayerRow, stat: str) -> float | None:
    if stat == "inactive":
        return row.dead_fraction if row.dead_fraction is not None else row.saturated_fraction
    return row.stat(stat)


def grid(runs: Sequence[list[LayerRow]], stat: str) -> Grid | None:
    """The median over runs (seeds) of `stat` at each (layer, step); None when no run recorded it."""
    runs = [rows for rows in runs if rows]
    names: dict[int, str] = {}
    for rows in runs:
        for row in rows:
            names.setdefault(row.position, row.layer)
    steps = sorted({row.step for rows in runs for row in rows})
    if not names or not steps:
        return None
    positions = sorted(names)
    row_of, col_of = {p: i for i, p in enumerate(positions)}, {s: j for j, s in enumerate(steps)}
    stack = np.full((len(runs), len(positions), len(steps)), np.nan)
    for k, rows in enumerate(runs):
        for row in rows:
            value = _value(row, stat)
            if value is not None:
                stack[k, row_of[row.position], col_of[row.step]] = value
    if np.all(np.isnan(stack)):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a cell no run recorded stays NaN
        values = np.nanmedian(stack, axis=0) if len(runs) > 1 else stack[0]
    return Grid([names[p] for p in positions], steps, values, len(runs))


def _edges(centres: list[int]) -> np.ndarray:
    c = np.asarray(centres, dtype=float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[:-1] + c[1:]) / 2
    return np.concatenate(([c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]))


def _norm(grids: list[Grid], heatmap: Heatmap) -> Normalize:
    finite = np.concatenate([g.values[np.isfinite(g.values)] for g in grids])
    if not heatmap.log:
        return Normalize(vmin=0.0, vmax=1.0)
    positive = finite[finite > 0]
    if positive.size == 0:
        return LogNorm(vmin=1e-8, vmax=1.0)
    vmax = float(positive.max())
    vmin = max(float(positive.min()), vmax * 10.0**-MAX_DECADES)
    return LogNorm(vmin=vmin, vmax=vmax if vmax > vmin else vmin * 10)


def heatmap_png(panels: list[tuple[str, Grid]], heatmap: Heatmap) -> bytes:
    """One panel per (title, grid), a shared colour scale; layers top (input) to bottom (output)."""
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    tallest = max(len(g.layers) for _, g in panels)
    fig = Figure(figsize=(4.8 * cols + 1.2, rows * max(2.6, 0.16 * tallest + 1.4)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    norm = _norm([g for _, g in panels], heatmap)
    cmap = colormaps["viridis"].with_extremes(bad="#dddddd")
    mesh = None
    for ax, (title, g) in zip(axes.flat, panels, strict=False):
        shown = np.ma.masked_invalid(np.where(g.values > 0, g.values, np.nan) if heatmap.log else g.values)
        mesh = ax.pcolormesh(_edges(g.steps), np.arange(len(g.layers) + 1) - 0.5, shown, norm=norm, cmap=cmap)
        ax.set_ylim(len(g.layers) - 0.5, -0.5)
        every = max(1, math.ceil(len(g.layers) / 16))
        ticks = list(range(0, len(g.layers), every))
        ax.set_yticks(ticks, [g.layers[i] for i in ticks], fontsize="x-small")
        seeds = f" (median of {g.runs} runs)" if g.runs > 1 else ""
        ax.set_title(textwrap.fill(f"{title}{seeds}", 60), fontsize="small")
        ax.set_xticks(g.steps[:: max(1, math.ceil(len(g.steps) / 10))])
        ax.set_xlabel("optimizer step", fontsize="small")
        ax.tick_params(axis="x", labelsize="x-small")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.colorbar(
        mesh, ax=axes.ravel().tolist(), label=heatmap.title + (" (log scale)" if heatmap.log else "")
    )
    fig.suptitle(f"{heatmap.title}, by layer and step (grey: not recorded or 0)", fontsize="medium")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def figures(panels: list[tuple[str, list[list[LayerRow]]]]) -> dict[str, bytes]:
    """File name -> PNG for every heatmap that has data; `panels` = (title, the rows of each of its runs)."""
    out: dict[str, bytes] = {}
    for stat, heatmap in HEATMAPS.items():
        grids = [(title, g) for title, runs in panels if (g := grid(runs, stat)) is not None]
        if grids:
            out[heatmap.file] = heatmap_png(grids, heatmap)
    return out


def sweep_figures(ranked: list[ConfigResult]) -> dict[str, bytes]:
    """The heatmaps of a sweep, one panel per configuration (in ranking order) whose runs recorded diagnostics."""
    panels = []
    for c in ranked:
        runs = [rows for run in c.runs if (rows := read_rows(Path(run.path) / FILENAME))]
        if runs:
            panels.append((c.config, runs))
    return figures(panels)


def report_blocks(images: dict[str, bytes]) -> list[tuple]:
    """The report's "Layer diagnostics" section (render.py blocks); none when no run recorded diagnostics."""
    if not images:
        return []
    blocks: list[tuple] = [
        ("h2", "Layer diagnostics"),
        (
            "p",
            "Per configuration (median over seeds), each Linear / Conv layer from the input (top) to the output "
            "(bottom) against the optimizer step, from the diagnostics.csv its runs recorded "
            "(callbacks=diagnostics). A std that shrinks layer after layer at step 0 is a vanishing signal; "
            "an update / weight ratio far from about 1e-3 is a step that is too small or too large.",
        ),
    ]
    blocks += [("img", h.title, h.file) for h in HEATMAPS.values() if h.file in images]
    return blocks
