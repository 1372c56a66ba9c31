"""The report's figures, as PNG bytes. Figures are drawn on the Agg canvas directly (no pyplot), so building a
report inside a training process never changes its matplotlib backend or leaks figures."""

from __future__ import annotations

import io

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from trainspeed.report.aggregate import ConfigResult, LRPick
from trainspeed.report.profile import PerformanceProfile

GRID_POINTS = 200


def _colors(configs: list[ConfigResult]) -> dict[str, tuple]:
    cmap = colormaps["tab10" if len(configs) <= 10 else "tab20"]
    return {c.config: cmap(i % cmap.N) for i, c in enumerate(configs)}


def _new(width: float = 8.0, height: float = 5.0) -> tuple[Figure, object]:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")


def _legend(ax, n: int) -> None:
    """Beside the axes, never over the curves (the PNG is cropped to include it)."""
    if n and ax.get_legend_handles_labels()[0]:  # configurations without a curve (all failed) have no entry
        ax.legend(fontsize="x-small" if n > 8 else "small", loc="upper left", bbox_to_anchor=(1.01, 1.0))


def median_band(curves: list[list[tuple[float, float]]]) -> tuple[np.ndarray, ...] | None:
    """Median, min and max over runs of curves sampled at different x, on a common grid that ends where the
    shortest run ended.

    No run's last value is carried forward as a plateau it never trained through, and the median does not jump
    when a run drops out; what the longer runs did afterwards is drawn by `tails`, one thin line per run.
    """
    curves = [sorted(c) for c in curves if c]
    if not curves:
        return None
    lo = min(c[0][0] for c in curves)
    hi = min(c[-1][0] for c in curves)
    grid = np.linspace(lo, hi, GRID_POINTS) if hi > lo else np.array([lo])
    stack = np.full((len(curves), grid.size), np.nan)
    for i, c in enumerate(curves):
        x, y = np.array(c, dtype=float).T
        started = grid >= x[0]
        stack[i, started] = np.interp(grid[started], x, y)
    keep = ~np.all(np.isnan(stack), axis=0)
    stack, grid = stack[:, keep], grid[keep]
    return grid, np.nanmedian(stack, axis=0), np.nanmin(stack, axis=0), np.nanmax(stack, axis=0)


def tails(curves: list[list[tuple[float, float]]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each run's curve after the shortest run ended (where `median_band` stops), up to its own last point."""
    curves = [sorted(c) for c in curves if c]
    if len(curves) < 2:
        return []
    end = min(c[-1][0] for c in curves)
    out = []
    for c in curves:
        x, y = np.array(c, dtype=float).T
        after = x > end
        if after.any():
            out.append((np.r_[end, x[after]], np.r_[np.interp(end, x, y), y[after]]))
    return out


def _curves_plot(
    configs, curves_of, xlabel: str, ylabel: str, title: str, *, target=None, logy=False
) -> bytes:
    fig, ax = _new()
    colors, drawn, positive = _colors(configs), 0, True
    for c in configs:
        curves = [curves_of(run) for run in c.runs]
        band = median_band(curves)
        if band is None:
            continue
        x, med, lo, hi = band
        positive = positive and bool(np.all(lo > 0))
        ax.plot(x, med, color=colors[c.config], label=f"{c.config} (n={c.n_runs})", lw=1.5)
        ax.fill_between(x, lo, hi, color=colors[c.config], alpha=0.2, lw=0)
        for tail_x, tail_y in tails(curves):
            positive = positive and bool(np.all(tail_y > 0))
            ax.plot(tail_x, tail_y, color=colors[c.config], lw=0.8, alpha=0.7)
        drawn += 1
    if target is not None and drawn:
        ax.axhline(target, color="black", ls="--", lw=1, label=f"target {target:g}")
    if not drawn:
        _no_data(ax, "no logged points yet")
    elif logy and positive:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    _legend(ax, drawn)
    return _png(fig)


def val_metric_vs_time(configs: list[ConfigResult], target: float | None, metric: str = "val/acc") -> bytes:
    return _curves_plot(
        configs,
        lambda run: run.paired("time/train_seconds", metric),
        "training seconds",
        metric,
        f"{metric} vs training time (median over seeds, band = min–max; thin: single runs past the shortest)",
        target=target,
    )


def train_loss_vs_step(configs: list[ConfigResult]) -> bytes:
    return _curves_plot(
        configs,
        lambda run: run.series.get("train/loss", []),
        "step",
        "train/loss",
        "training loss vs step (median over seeds, band = min–max; thin: single runs past the shortest)",
        logy=True,
    )


def time_to_target_bars(ranked: list[ConfigResult]) -> bytes:
    """Median seconds per configuration, best at the top, with min–max error bars; unreached marked."""
    fig, ax = _new(8.0, max(2.5, 0.45 * len(ranked) + 1.2))
    colors = _colors(ranked)
    ys = np.arange(len(ranked))[::-1]
    reached_max = max((c.max_seconds or 0.0 for c in ranked), default=0.0) or 1.0
    for y, c in zip(ys, ranked, strict=True):
        note = f"{c.reached}/{c.n_runs} reached" + (f", {c.pruned} pruned" if c.pruned else "")
        if c.median_seconds is None:
            ax.text(0, y, f"  not reached ({note})", va="center", color="firebrick", fontsize="small")
            continue
        err = [[c.median_seconds - c.min_seconds], [c.max_seconds - c.median_seconds]]
        ax.barh(
            y,
            c.median_seconds,
            color=colors[c.config],
            alpha=0.8 if c.all_reached else 0.35,
            hatch=None if c.all_reached else "//",
            xerr=err,
            capsize=3,
        )
        ax.text(
            c.max_seconds + 0.01 * reached_max,
            y,
            f" {c.median_seconds:.3g}s ({note})",
            va="center",
            fontsize="small",
        )
    ax.set_yticks(ys, [f"{c.rank}. {c.config}" for c in ranked], fontsize="small")
    ax.set_ylim(-0.6, len(ranked) - 0.4)
    ax.set_xlim(0, reached_max * 1.45)
    ax.set(
        xlabel="time to target, training seconds (median, error bar = min–max over seeds)",
        title="time to target",
    )
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def performance_profile_plot(profile: PerformanceProfile, ranked: list[ConfigResult]) -> bytes:
    fig, ax = _new()
    colors = _colors(ranked)
    taus = np.linspace(1.0, profile.tau_max, 400)
    for c in ranked:
        rho = [profile.rho(c.config, t) for t in taus]
        ax.step(
            taus,
            rho,
            where="post",
            color=colors[c.config],
            lw=1.5,
            label=f"{c.config} (score {profile.score(c.config):.2f})",
        )
    ax.set(
        xlabel="τ (time relative to the fastest configuration for the same seed)",
        ylabel="ρ(τ)",
        title="performance profile",
        ylim=(-0.03, 1.03),
        xlim=(1.0, profile.tau_max),
    )
    ax.grid(alpha=0.3)
    _legend(ax, len(ranked))
    return _png(fig)


def missed_marks(picks: list[LRPick], ceiling: float, row: float) -> list[list[tuple[float, float]]]:
    """Per group, (lr, y) of the learning rates where no run reached the target: above the curves, one row per
    group (and the lr nudged sideways by group on the log axis), so that no group's mark hides another's."""
    spread = 0.04 * (len(picks) - 1)
    marks = []
    for i, pick in enumerate(picks):
        nudge = 10 ** ((i / max(len(picks) - 1, 1) - 0.5) * spread) if len(picks) > 1 else 1.0
        y = ceiling + (i + 1) * row
        marks.append([(lr * nudge, y) for lr, c in pick.curve if c.median_seconds is None])
    return marks


def lr_sensitivity(picks: list[LRPick]) -> bytes:
    """Median time to target vs learning rate per group (log x); × above the curves marks lrs that did not
    reach, one row per group."""
    fig, ax = _new()
    cmap = colormaps["tab10" if len(picks) <= 10 else "tab20"]
    top = max((c.median_seconds or 0.0 for p in picks for _, c in p.curve), default=0.0) or 1.0
    ceiling, row = top * 1.1, top * 0.06
    missed_by_group = missed_marks(picks, ceiling, row)
    for i, pick in enumerate(picks):
        color = cmap(i % cmap.N)
        pts = [(lr, c.median_seconds) for lr, c in pick.curve if c.median_seconds is not None]
        if pts:
            ax.plot(
                *zip(*pts, strict=True),
                marker="o",
                color=color,
                label=f"{pick.group} (best lr {pick.best_lr})",
            )
        partial = [
            (lr, c.median_seconds)
            for lr, c in pick.curve
            if c.median_seconds is not None and not c.all_reached
        ]
        if partial:
            ax.scatter(*zip(*partial, strict=True), facecolors="none", edgecolors=color, s=120, zorder=3)
        missed = missed_by_group[i]
        if missed:
            ax.scatter(
                *zip(*missed, strict=True),
                marker="x",
                color=color,
                s=60,
                linewidths=2,
                zorder=5,  # above the curves and the other marks
                label=None if pts else f"{pick.group} (none reached)",
            )
        best_lr = next((lr for lr, c in pick.curve if c is pick.best), None)
        if best_lr is not None and pick.best.median_seconds is not None:
            ax.scatter([best_lr], [pick.best.median_seconds], marker="*", s=220, color=color, zorder=4)
    if any(p.curve for p in picks):
        ax.set_xscale("log")
        ax.axhline(ceiling, color="gray", lw=0.5, ls=":")
        if any(missed_by_group):
            ax.text(0.005, ceiling + 0.2 * row, "none reached", transform=ax.get_yaxis_transform(),
                    fontsize="x-small", color="gray", va="bottom")  # fmt: skip
        ax.set_ylim(0, ceiling + (len(picks) + 1) * row)
    else:
        _no_data(ax, "no numeric learning rates")
    lr_key = picks[0].lr_key if picks else "lr"
    ax.set(
        xlabel=f"{lr_key} (log scale)",
        ylabel="median time to target, training seconds",
        title="learning-rate sensitivity (★ best, ○ not all seeds reached, × none reached)",
    )
    ax.grid(alpha=0.3, which="both")
    _legend(ax, len(picks))
    return _png(fig)


def all_plots(ranked, profile, picks, target: float | None, metric: str = "val/acc") -> dict[str, bytes]:
    """File name -> PNG bytes, for every figure that applies to this sweep."""
    plots = {
        "val_metric_vs_time.png": val_metric_vs_time(ranked, target, metric),
        "train_loss_vs_step.png": train_loss_vs_step(ranked),
        "time_to_target.png": time_to_target_bars(ranked),
        "performance_profile.png": performance_profile_plot(profile, ranked),
    }
    if picks:
        plots["lr_sensitivity.png"] = lr_sensitivity(picks)
    return plots
