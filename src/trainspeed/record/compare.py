"""Compare two run folders: their logged metrics and records, and the environment they ran in."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from trainspeed.record.environment import git_state, package_versions
from trainspeed.record.run_folder import METRICS_FILE, metrics_path, read_metrics_csv
from trainspeed.record.summary import Summary, read_summary

# timing measures the machine, not the run: never part of a reproduction check
TIMING = ("seconds", "time/", "wall_", "train_seconds")
SUMMARY_FIELDS = ("status", "reached_target", "steps", "epochs", "seed")
TIME_TO_TARGET_FIELDS = ("steps", "epochs", "samples")
INPUT_FIELDS = ("data", "weights")


@dataclass(frozen=True)
class Difference:
    where: str  # "metrics.csv" or "summary.json"
    metric: str
    step: int | None
    original: object
    rerun: object


@dataclass
class Comparison:
    """What differs, and what could be compared at all (a run logged without metrics.csv has no per-step values).
    Timings are never compared (TIMING)."""

    differences: list[Difference] = field(default_factory=list)
    compared: list[str] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)


def _is_timing(name: str) -> bool:
    return any(part in name for part in TIMING)


def read_metrics(run_dir: Path) -> dict[tuple[str, int], float] | None:
    """(metric, step) -> value for every non-timing value in metrics.csv (the last value wins on repeats);
    None when the run has no metrics.csv."""
    path = metrics_path(run_dir)
    if path is None:
        return None
    return {
        (name, int(step)): value
        for name, points in read_metrics_csv(path).items()
        if not _is_timing(name)
        for step, value in points
    }


def _equal(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _compare_metrics(original: Path, rerun: Path, result: Comparison) -> None:
    a, b = read_metrics(original), read_metrics(rerun)
    if a is None or b is None:
        missing = " and ".join(str(p) for p, m in ((original, a), (rerun, b)) if m is None)
        result.not_compared.append(
            f"per-step values: {missing} has no {METRICS_FILE} (logged with another logger; add logger=csv)"
        )
        return
    steps = {step for _, step in a} | {step for _, step in b}
    result.compared.append(f"{len(set(a) | set(b))} logged values of {METRICS_FILE} at {len(steps)} steps")
    for key in sorted(set(a) | set(b), key=lambda k: (k[1], k[0])):
        if not _equal(a.get(key), b.get(key)):
            result.differences.append(Difference(METRICS_FILE, key[0], key[1], a.get(key), b.get(key)))


def _compare_summaries(sa: Summary, sb: Summary, result: Comparison) -> None:
    for name in SUMMARY_FIELDS:
        va, vb = getattr(sa, name), getattr(sb, name)
        if va != vb:
            result.differences.append(Difference("summary.json", name, None, va, vb))
    for name in sorted(set(sa.metrics) | set(sb.metrics)):
        va, vb = sa.metrics.get(name), sb.metrics.get(name)
        if not _equal(va, vb):
            result.differences.append(Difference("summary.json", f"metrics.{name}", None, va, vb))
    for name in TIME_TO_TARGET_FIELDS:
        va, vb = getattr(sa.time_to_target, name), getattr(sb.time_to_target, name)
        if va != vb:
            result.differences.append(Difference("summary.json", f"time_to_target.{name}", None, va, vb))
    result.compared.append(
        f"summary.json: {', '.join(SUMMARY_FIELDS)}, {len(set(sa.metrics) | set(sb.metrics))} final metrics, "
        f"time_to_target {', '.join(TIME_TO_TARGET_FIELDS)}"
    )
    _compare_inputs(sa, sb, result)


def _compare_inputs(sa: Summary, sb: Summary, result: Comparison) -> None:
    """The fingerprints of the data and weights each run read (record/inputs.py): other inputs explain every
    other difference, so they are listed first."""
    named = [name for name in INPUT_FIELDS if getattr(sa.inputs, name) is not None]
    if sa.inputs.data is None:
        result.not_compared.append(
            "the data read: the original record has no fingerprint of it (before version 4)"
        )
    if not named:
        return
    differ = [
        Difference("summary.json", f"inputs.{name}", None, getattr(sa.inputs, name), getattr(sb.inputs, name))
        for name in named
        if getattr(sa.inputs, name) != getattr(sb.inputs, name)
    ]
    result.differences[:0] = differ
    result.compared.append("the inputs read: " + ", ".join(f"{name} fingerprint" for name in named))


def input_differences(comparison: Comparison) -> list[str]:
    """The inputs (data, weights) whose fingerprints differ between the original and the re-run."""
    return [
        d.metric.removeprefix("inputs.") for d in comparison.differences if d.metric.startswith("inputs.")
    ]


def compare_runs(original: Path, rerun: Path) -> Comparison:
    """Every logged value and summary field that differs between two runs (timing excluded), and what was
    compared. Raises RecordError when a summary.json cannot be read."""
    result = Comparison()
    _compare_metrics(original, rerun, result)
    sa, sb = read_summary(original), read_summary(rerun)
    if sa is None or sb is None:
        missing = " and ".join(str(p) for p, s in ((original, sa), (rerun, sb)) if s is None)
        result.not_compared.append(f"results: {missing} has no summary.json")
    else:
        _compare_summaries(sa, sb, result)
    return result


def environment_changes(summary: Summary | None) -> list[str]:
    """Warnings for package versions or the git commit that differ from the run's record."""
    if summary is None:
        return []
    warnings = []
    now = package_versions()
    for name, version in summary.versions.items():
        if name in now and now[name] != version:
            warnings.append(f"{name} was {version} for the original run, is {now[name]} now")
    then, now_git = summary.git, git_state()
    if then.commit and then.commit != now_git.get("commit"):
        warnings.append(f"git commit was {then.commit[:12]}, is {str(now_git.get('commit'))[:12]} now")
    if then.dirty:
        warnings.append("the original run was made from a tree with uncommitted changes")
    return warnings
