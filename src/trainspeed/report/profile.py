"""Performance profiles, as in AlgoPerf (Dahl et al., 2023), with configurations in place of submissions.

For a run r of configuration c with seed s, its ratio is t(r) / min over all runs with seed s of t, where t is
the time-to-target seconds (infinite when the target was not reached). ρ_c(τ) is the fraction of c's runs whose
ratio is at most τ. The score is the area under ρ_c on [1, τ_max], divided by τ_max - 1: 1.0 means every run was
the fastest for its seed, 0.0 means no run came within τ_max× of the fastest.

Seeds play AlgoPerf's workloads, which every submission runs: only the seeds every configuration ran count. A
seed that one configuration ran alone would make its run the fastest for that seed for free (ratio 1), so a
sweep merged from runs on different seeds would give every configuration a perfect score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trainspeed.report.aggregate import ConfigResult
from trainspeed.report.collect import Run

TAU_MAX = 4.0  # AlgoPerf's τ_max


def _time(run: Run) -> float:
    return run.seconds if run.reached and run.seconds is not None else math.inf


@dataclass
class PerformanceProfile:
    """Per configuration, the ratio of each of its runs to the best time for the same seed."""

    ratios: dict[str, list[float]]  # config -> one ratio per run (inf = never within)
    tau_max: float = TAU_MAX
    left_out: int = 0  # runs of seeds that not every configuration ran

    def rho(self, config: str, tau: float) -> float:
        """Fraction of the configuration's runs within τ× of the best time for their seed."""
        ratios = self.ratios[config]
        return sum(r <= tau for r in ratios) / len(ratios) if ratios else 0.0

    def score(self, config: str) -> float:
        """Area under ρ on [1, τ_max], normalised to [0, 1]. Exact: each run adds 1/n on [max(1, ratio), τ_max]."""
        ratios = self.ratios[config]
        if not ratios or self.tau_max <= 1:
            return 0.0
        area = sum(max(0.0, self.tau_max - max(1.0, r)) for r in ratios if math.isfinite(r))
        return area / len(ratios) / (self.tau_max - 1)


def performance_profile(configs: list[ConfigResult], tau_max: float = TAU_MAX) -> PerformanceProfile:
    """The profile of every configuration; sets each configuration's `profile_score`."""
    seeds = [{run.seed for run in c.runs} for c in configs if c.runs]
    shared = set.intersection(*seeds) if seeds else set()
    best: dict[str | None, float] = {}
    for c in configs:
        for run in c.runs:
            if run.seed in shared:
                best[run.seed] = min(best.get(run.seed, math.inf), _time(run))
    ratios: dict[str, list[float]] = {}
    for c in configs:
        ratios[c.config] = [_ratio(_time(run), best[run.seed]) for run in c.runs if run.seed in shared]
    left_out = sum(run.seed not in shared for c in configs for run in c.runs)
    profile = PerformanceProfile(ratios=ratios, tau_max=tau_max, left_out=left_out)
    for c in configs:
        c.profile_score = profile.score(c.config) if ratios[c.config] else None
    return profile


def _ratio(t: float, best: float) -> float:
    if not math.isfinite(t):
        return math.inf
    if best <= 0:  # a zero best time (target met before the first step): only another zero ties it
        return 1.0 if t <= best else math.inf
    return t / best
