"""Group runs into configurations (the overrides that vary across the sweep, seeds aggregated) and rank them.

Ranking rule (RANK_RULE, printed under the report's table): configurations whose every run reached the target
come first, by median time-to-target seconds (then median steps); the others follow, by the fraction of runs that
reached, then the fraction that failed (fewest first: a configuration whose jobs failed or never finished is not
a result, however far its partial metrics got), then median seconds of the runs that reached, then best validation
accuracy. Diverged, failed, unfinished and pruned runs (stopped by an Optuna search's budget) count as runs that did
not reach; the counts keep them apart.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from trainspeed.report.collect import Run, override_key, override_value

SEED_KEY = "seed"
RANK_RULE = (
    "Configurations whose every run reached the target rank first, by median seconds (then median steps); "
    "the others follow, by the fraction of runs that reached it, then the fraction of runs that failed (fewest "
    "first), then the median seconds of the runs that reached, then best validation accuracy."
)
UNKNOWN_CONFIG = "(overrides unknown)"


@dataclass
class ConfigResult:
    """One configuration: its runs over seeds and their aggregates."""

    config: str
    overrides: tuple[str, ...]
    runs: list[Run]
    rank: int = 0
    profile_score: float | None = None  # area under the performance profile, filled in by profile.py

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    @property
    def reached(self) -> int:
        return sum(r.reached for r in self.runs)

    @property
    def pruned(self) -> int:
        """Runs an Optuna search's budget stopped: slower than its best trial x the factor, not failures."""
        return sum(r.pruned for r in self.runs)

    @property
    def diverged(self) -> int:
        return sum(r.status == "diverged" for r in self.runs)

    @property
    def failed(self) -> int:
        """Jobs whose summary says failed, plus jobs without a (readable) summary (unfinished)."""
        return sum(r.status not in ("completed", "diverged") for r in self.runs)

    @property
    def unfinished(self) -> int:
        return sum(r.status == "unfinished" for r in self.runs)

    @property
    def reached_seconds(self) -> list[float]:
        return [r.seconds for r in self.runs if r.reached and r.seconds is not None]

    @property
    def median_seconds(self) -> float | None:
        return _median(self.reached_seconds)

    @property
    def min_seconds(self) -> float | None:
        return min(self.reached_seconds, default=None)

    @property
    def max_seconds(self) -> float | None:
        return max(self.reached_seconds, default=None)

    @property
    def median_steps(self) -> float | None:
        return _median([r.steps for r in self.runs if r.reached and r.steps is not None])

    @property
    def val_acc_best_median(self) -> float | None:
        return _median([r.val_acc_best for r in self.runs if r.val_acc_best is not None])

    @property
    def all_reached(self) -> bool:
        return self.n_runs > 0 and self.reached == self.n_runs

    def value_of(self, key: str) -> str | None:
        """The value this configuration gives to an override key, or None."""
        return next((override_value(o) for o in self.overrides if override_key(o) == key), None)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def varying_keys(runs: list[Run]) -> list[str]:
    """Override keys whose value differs across jobs (or that only some jobs set), in first-seen order."""
    known = [dict((override_key(o), o) for o in r.overrides) for r in runs if r.overrides is not None]
    order: list[str] = []
    for overrides in known:
        order += [k for k in overrides if k not in order]
    return [k for k in order if len({o.get(k) for o in known}) > 1]


def config_of(run: Run, keys: list[str], common: tuple[str, ...]) -> tuple[str, ...] | None:
    if run.overrides is None:
        return None
    by_key = dict((override_key(o), o) for o in run.overrides)
    chosen = tuple(by_key[k] for k in keys if k in by_key and k != SEED_KEY)
    return chosen if chosen or keys else common


def group_configs(runs: list[Run]) -> list[ConfigResult]:
    """Configurations in first-seen order. When nothing but the seed varies, the one configuration is named by
    the overrides all jobs share (or "(defaults)")."""
    keys = [k for k in varying_keys(runs) if k != SEED_KEY]
    first = next((r.overrides for r in runs if r.overrides is not None), [])
    common = tuple(o for o in first if override_key(o) != SEED_KEY)
    groups: dict[tuple[str, ...] | None, list[Run]] = {}
    for run in runs:
        groups.setdefault(config_of(run, keys, common), []).append(run)
    results = []
    for overrides, members in groups.items():
        name = UNKNOWN_CONFIG if overrides is None else (" ".join(overrides) or "(defaults)")
        results.append(ConfigResult(config=name, overrides=overrides or (), runs=members))
    return results


def rank_key(c: ConfigResult) -> tuple:
    inf = math.inf
    seconds = c.median_seconds if c.median_seconds is not None else inf
    steps = c.median_steps if c.median_steps is not None else inf
    best_acc = -(c.val_acc_best_median if c.val_acc_best_median is not None else -inf)
    if c.all_reached:
        return (0, 0.0, seconds, steps, best_acc, c.config)
    reached = c.reached / c.n_runs if c.n_runs else 0.0
    failed = c.failed / c.n_runs if c.n_runs else 1.0
    return (1, -reached, failed, seconds, best_acc, steps, c.config)


def rank(configs: list[ConfigResult]) -> list[ConfigResult]:
    """Configurations best first, with `rank` set (1 = fastest to target)."""
    ranked = sorted(configs, key=rank_key)
    for i, c in enumerate(ranked, start=1):
        c.rank = i
    return ranked


@dataclass
class LRPick:
    """The best learning rate of one group of the other axes (e.g. one optimizer)."""

    group: str  # the other varying overrides, e.g. "optimizer=adam" ("(all)" when lr is the only axis)
    lr_key: str
    best: ConfigResult
    # (lr, configuration) for every lr tried in this group, by lr
    curve: list[tuple[float, ConfigResult]] = field(default_factory=list)

    @property
    def best_lr(self) -> str | None:
        return self.best.value_of(self.lr_key)


def lr_key_of(runs: list[Run]) -> str | None:
    """The varying learning-rate key (`lr` or one ending in `.lr`), if the sweep has one."""
    keys = [k for k in varying_keys(runs) if k == "lr" or k.endswith(".lr")]
    return keys[0] if keys else None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def lr_picks(ranked: list[ConfigResult], lr_key: str | None) -> list[LRPick]:
    """Per group of the other axes, the learning rate that ranks best (same rule as the table)."""
    if lr_key is None:
        return []
    groups: dict[str, list[ConfigResult]] = {}
    for c in ranked:  # already best first
        if c.value_of(lr_key) is None:
            continue
        rest = " ".join(o for o in c.overrides if override_key(o) != lr_key) or "(all)"
        groups.setdefault(rest, []).append(c)
    picks = []
    for group, members in groups.items():
        curve = sorted(
            ((lr, c) for c in members if (lr := _float(c.value_of(lr_key))) is not None and lr > 0),
            key=lambda item: item[0],
        )
        picks.append(LRPick(group=group, lr_key=lr_key, best=members[0], curve=curve))
    return picks
