"""Compare two run folders: their logged metrics and records, and the environment they ran in."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from trainspeed.record.environment import git_state, package_versions
from trainspeed.record.summary import read_summary

# timing measures the machine, not the run: never part of a reproduction check
TIMING = ("seconds", "time/", "wall_", "train_seconds")
SUMMARY_FIELDS = ("status", "reached_target", "steps", "epochs", "seed")


@dataclass(frozen=True)
class Difference:
    where: str  # "metrics.csv" or "summary.json"
    metric: str
    step: int | None
    original: object
    rerun: object


def _is_timing(name: str) -> bool:
    return any(part in name for part in TIMING)


def read_metrics(run_dir: Path) -> dict[tuple[str, int], float]:
    """(metric, step) -> value for every non-timing value in metrics.csv (the last value wins on repeats)."""
    path = run_dir / "metrics.csv"
    values: dict[tuple[str, int], float] = {}
    if not path.is_file():
        return values
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            step = int(float(row.get("step") or -1))
            for key, raw in row.items():
                if key in ("step", "epoch") or raw in ("", None) or _is_timing(key):
                    continue
                values[(key, step)] = float(raw)
    return values


def _equal(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare_runs(original: Path, rerun: Path) -> list[Difference]:
    """Every logged value and summary field that differs between two runs (timing excluded)."""
    diffs: list[Difference] = []
    a, b = read_metrics(original), read_metrics(rerun)
    for key in sorted(set(a) | set(b), key=lambda k: (k[1], k[0])):
        if not _equal(a.get(key), b.get(key)):
            diffs.append(Difference("metrics.csv", key[0], key[1], a.get(key), b.get(key)))
    sa, sb = read_summary(original) or {}, read_summary(rerun) or {}
    for field in SUMMARY_FIELDS:
        if sa.get(field) != sb.get(field):
            diffs.append(Difference("summary.json", field, None, sa.get(field), sb.get(field)))
    for name in sorted(set(sa.get("metrics") or {}) | set(sb.get("metrics") or {})):
        va, vb = (sa.get("metrics") or {}).get(name), (sb.get("metrics") or {}).get(name)
        if not _equal(va, vb):
            diffs.append(Difference("summary.json", f"metrics.{name}", None, va, vb))
    tta, ttb = sa.get("time_to_target") or {}, sb.get("time_to_target") or {}
    for name in ("steps", "epochs", "samples"):
        if tta.get(name) != ttb.get(name):
            diffs.append(
                Difference("summary.json", f"time_to_target.{name}", None, tta.get(name), ttb.get(name))
            )
    return diffs


def environment_changes(run_dir: Path) -> list[str]:
    """Warnings for package versions or the git commit that differ from the run's record."""
    summary = read_summary(run_dir) or {}
    warnings = []
    now = package_versions()
    for name, version in (summary.get("versions") or {}).items():
        if name in now and now[name] != version:
            warnings.append(f"{name} was {version} for the original run, is {now[name]} now")
    then_git, now_git = summary.get("git") or {}, git_state()
    if then_git.get("commit") and then_git.get("commit") != now_git.get("commit"):
        warnings.append(f"git commit was {then_git['commit'][:12]}, is {str(now_git.get('commit'))[:12]} now")
    if then_git.get("dirty"):
        warnings.append("the original run was made from a tree with uncommitted changes")
    return warnings
