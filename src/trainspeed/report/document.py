"""What the report says, as blocks that render.py turns into Markdown and HTML."""

from __future__ import annotations

from pathlib import Path

from trainspeed.report.aggregate import RANK_RULE, ConfigResult, LRPick
from trainspeed.report.collect import Run, common_target, target_text
from trainspeed.report.profile import PerformanceProfile
from trainspeed.report.render import Block, fmt, fmt_range
from trainspeed.report.significance import Significance
from trainspeed.report.significance_text import significance_blocks

RANK_HEADERS = [
    "rank",
    "configuration",
    "runs",
    "reached",
    "pruned",
    "diverged",
    "failed",
    "median s (reached)",
    "min–max s",
    "median steps (reached)",
    "best val acc (median)",
    "profile score",
]
PROFILE_TAUS = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0)
ERROR_CHARS = 400


def ranking_row(c: ConfigResult) -> list[str]:
    failed = f"{c.failed} ({c.unfinished} unfinished)" if c.unfinished else str(c.failed)
    return [
        str(c.rank),
        c.config,
        str(c.n_runs),
        str(c.reached),
        str(c.pruned),
        str(c.diverged),
        failed,
        fmt(c.median_seconds),
        fmt_range(c.min_seconds, c.max_seconds),
        fmt(c.median_steps),
        fmt(c.val_acc_best_median),
        fmt(c.profile_score, 3),
    ]


def _target_text(runs: list[Run]) -> str:
    target = common_target(runs)
    return (
        "target: not recorded (no run has finished)" if target is None else f"target: {target_text(*target)}"
    )


def _problem_rows(ranked: list[ConfigResult]) -> list[list[str]]:
    rows = []
    for c in ranked:
        for r in c.runs:
            if r.status == "completed":
                continue
            error = (r.error or "").strip().replace("\n", " ")
            if len(error) > ERROR_CHARS:
                error = error[: ERROR_CHARS - 1] + "…"
            rows.append([r.job, c.config, r.seed or "", r.status, error])
    return rows


def _pruned_blocks(ranked: list[ConfigResult]) -> list[Block]:
    """The runs the search's budget stopped, apart from the problems: slow settings, not broken ones."""
    rows = [[r.job, c.config, r.seed or "", fmt(r.val_acc_best)] for c in ranked for r in c.runs if r.pruned]
    if not rows:
        return []
    text = (
        "Stopped by the Optuna search's budget at a validation once their training seconds exceeded the best "
        'finished trial\'s median x prune_factor (summary.json: stopped_by "budget"): slower than the best '
        "setting found, not failures of a technique."
    )
    return [
        ("h2", "Pruned runs"),
        ("p", text),
        ("table", ["job", "configuration", "seed", "best val acc"], rows),
    ]


def blocks(
    sweep_dir: Path,
    runs: list[Run],
    ranked: list[ConfigResult],
    picks: list[LRPick],
    profile: PerformanceProfile,
    varying: list[str],
    plot_names: list[str],
    significance: Significance | None = None,
) -> list[Block]:
    seeds = sorted({r.seed for r in runs if r.seed is not None}, key=lambda s: (len(s), s))
    axes = ", ".join(k for k in varying if k != "seed") or "none (one configuration)"
    out: list[Block] = [
        ("h1", f"Sweep report: {sweep_dir.name}"),
        (
            "p",
            f"Sweep folder: {sweep_dir} — {len(runs)} jobs, {len(ranked)} configurations, {_target_text(runs)}.",
        ),
        ("p", f"Varying overrides: {axes}; aggregated over seeds: {', '.join(seeds) or 'none recorded'}."),
        ("h2", "Ranking"),
        ("table", RANK_HEADERS, [ranking_row(c) for c in ranked]),
        (
            "p",
            f"Times are training seconds to the target (evaluation and start-up excluded). {RANK_RULE} "
            "Medians and min–max are over the runs that reached the target; failed counts the jobs whose "
            "summary says failed and the jobs that never wrote a summary (unfinished, in brackets); pruned counts "
            "the runs an Optuna search's budget stopped once slower than its best trial x prune_factor (they did "
            "not reach the target because they were stopped, not because they could not).",
        ),
    ]
    if significance is not None:
        out += significance_blocks(significance, ranked)
    if picks:
        key = picks[0].lr_key
        rows = [
            [
                p.group,
                p.best_lr or "",
                p.best.config,
                f"{p.best.reached}/{p.best.n_runs}",
                fmt(p.best.median_seconds),
                ", ".join(f"{lr:g}" for lr, _ in p.curve),
            ]
            for p in picks
        ]
        out += [
            ("h2", "Learning-rate picks"),
            ("table", ["group", f"best {key}", "configuration", "reached", "median s", f"{key} tried"], rows),
        ]
        if "lr_sensitivity.png" in plot_names:
            out.append(("img", "learning-rate sensitivity", "lr_sensitivity.png"))
    prof_rows = [
        [c.config] + [fmt(profile.rho(c.config, t), 3) for t in PROFILE_TAUS] + [fmt(c.profile_score, 3)]
        for c in ranked
    ]
    out += [
        ("h2", "Performance profile"),
        (
            "p",
            f"ρ(τ) is the fraction of a configuration's runs that reached the target within τ× the fastest time "
            f"of any configuration with the same seed (AlgoPerf); the score is the area under ρ on "
            f"[1, {profile.tau_max:g}], normalised to [0, 1]." + _left_out(profile),
        ),
        ("table", ["configuration"] + [f"ρ({t:g})" for t in PROFILE_TAUS] + ["score"], prof_rows),
        ("img", "performance profile", "performance_profile.png"),
        ("h2", "Plots"),
    ]
    captions = {
        "time_to_target.png": "time to target",
        "val_metric_vs_time.png": "validation metric vs time",
        "train_loss_vs_step.png": "training loss vs step",
    }
    out += [("img", caption, name) for name, caption in captions.items() if name in plot_names]
    out += _pruned_blocks(ranked)
    problems = _problem_rows(ranked)
    out.append(("h2", "Diverged, failed and unfinished runs"))
    if problems:
        out.append(("table", ["job", "configuration", "seed", "status", "error"], problems))
    else:
        out.append(("p", "None: every run completed."))
    return out


def _left_out(profile: PerformanceProfile) -> str:
    """What the profile leaves out: the runs of seeds that not every configuration ran."""
    if not profile.left_out:
        return ""
    if not any(profile.ratios.values()):
        return " No seed was run by every configuration, so there is no profile."
    return (
        f" Only seeds that every configuration ran count: {profile.left_out} runs of other seeds are left out "
        "(a seed run by one configuration alone would make its run the fastest for free)."
    )
