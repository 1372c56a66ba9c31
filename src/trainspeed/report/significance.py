"""Which differences are real: each configuration's time to target against the fastest one's, over seeds.

For seconds and for steps separately, the fastest configuration is the one with the smallest median among those
whose every run reached the target (the ranking, too, puts reliability first). Every other configuration gets:
- the ratio of its median to the fastest one's, with a 95 % percentile bootstrap interval (both samples resampled
  with replacement, independently, from a generator with a fixed seed): how large the difference may be. With a
  few seeds that interval is optimistic (never wider than the spread of the samples), so it does not decide;
- a verdict from a rank test corrected for the several comparisons and for picking the fastest from the same
  runs (corrected_test: Westfall and Young's max-T over random relabellings of the runs), so that the chance of
  calling any configuration different when all are alike stays at most 5 %. Testing each configuration on its own
  against the fastest would not: with 6 configurations x 3 seeds, a percentile-bootstrap interval above 1 was
  found in 37 % of sweeps of identical configurations. *slower* / *faster*: p <= 0.05; *tied*: not
  distinguishable with these seeds (not "equal": the interval says how far apart they may still be); *too few
  seeds*: no outcome of these seed counts could reach 5 % (two configurations of 3 seeds give p >= 0.1 at best),
  so the comparison decides nothing and says so rather than calling it a tie.

The pairs listed where seconds and steps disagree (the steps ranking puts one first, the seconds ranking the other)
rest on the pair's own exact rank test of the seconds per step of the runs that reached the target (rank_test:
every split of the pair's runs enumerated, Mann-Whitney's statistic, two-sided), Holm-corrected over the pairs that
disagree, so that noise alone lists a pair at most 5 % of the time.

Seeds are the unit: runs that repeat a seed of their configuration (an Optuna search that tries one setting twice,
a sweep launched twice into one folder by hand) measure the same thing again, not a new seed, so the tests and the
intervals take each seed's median once and the report says which seeds repeat.

A run that never reached the target (it stalled or diverged) counts as infinitely slow: a configuration that reached
the target in 2 of 3 seeds has a finite median, one that reached it in 1 of 3 an infinite one; in the rank test the
unreached runs are the slowest, tied among themselves. Failed and unfinished runs measured nothing and are left
out (collect.py does not count a failed run as reached). The resampling and the relabelling are a few vectorized
numpy lines: scipy.stats.bootstrap / permutation_test do one pair at a time, and the max-T correction has to
replay the choice of the fastest over every configuration at once; the generator's seed is fixed, so the same
sweep always gives the same report.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field, replace

import numpy as np

from trainspeed.report.aggregate import ConfigResult
from trainspeed.report.collect import Run

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE  # the rank test's level, after the correction for several comparisons
RESAMPLES = 4000
BOOTSTRAP_SEED = 0
EXACT_SPLITS = 50_000  # splits of the pooled runs enumerated exactly; beyond, PERMUTATIONS random ones
PERMUTATIONS = 20_000  # random splits of a pair beyond EXACT_SPLITS
RELABELLINGS = 4000  # random relabellings of a sweep's runs for the corrected test
MEASURED = ("completed", "diverged")  # statuses whose runs say something about time to target

FASTEST, TIED, SLOWER, FASTER = "fastest", "tied", "slower", "faster"
TOO_FEW = "too few seeds"
ONE_SEED = "one seed: no interval"
NONE_REACHED = "no configuration's median run reached the target"
NO_RUN = "no measured run"
MAX_DISAGREEMENTS = 10


@dataclass(frozen=True)
class Ratio:
    """One configuration against the fastest, on one measure (seconds or steps)."""

    rank: int  # by median, 1 = fastest; equal medians share a rank
    median: float | None  # over measured runs, a run that never reached counting as infinite; None: no run
    ratio: float | None  # median / the fastest configuration's median
    low: float | None  # the bootstrap interval of the ratio; None when it cannot be computed
    high: float | None
    verdict: str  # fastest | tied | slower | faster | TOO_FEW | ONE_SEED | NONE_REACHED | NO_RUN
    p: float | None = None  # the rank test's p-value against the fastest, max-T corrected; None: no test

    @property
    def tied(self) -> bool:
        return self.verdict == TIED


@dataclass
class Significance:
    """Per configuration name, its seconds and steps against the fastest; and where the two rankings disagree."""

    seconds: dict[str, Ratio] = field(default_factory=dict)
    steps: dict[str, Ratio] = field(default_factory=dict)
    fastest_seconds: str | None = None
    fastest_steps: str | None = None
    disagreements: list[str] = field(default_factory=list)
    one_seed: bool = False  # some configuration (or the fastest) has a single measured run: no interval there
    too_few: bool = False  # some comparison has too few seeds for the rank test to decide at 5 %
    seeds_needed: int = 0  # seeds per configuration with which the rank test could decide every comparison
    repeated: list[str] = field(default_factory=list)  # "config (seed 0 x3)": seeds run more than once


def _by_seed(c: ConfigResult) -> list[list[Run]]:
    """The measured runs of `c`, one group per seed (a run of unknown seed is a group of its own)."""
    groups: dict[object, list[Run]] = {}
    for i, run in enumerate(c.runs):
        if run.status in MEASURED:
            groups.setdefault(run.seed if run.seed is not None else ("run", i), []).append(run)
    return list(groups.values())


def _time(run: Run, measure: str) -> float:
    value = getattr(run, measure)
    return float(value) if run.reached and value is not None and math.isfinite(float(value)) else math.inf


def samples(c: ConfigResult, measure: str) -> np.ndarray:
    """Time to target of every seed of `c` in `measure` ("seconds" | "steps"), inf where never reached; a seed
    run more than once counts once, with the median of its runs."""
    return np.asarray(
        [float(np.median([_time(run, measure) for run in runs])) for runs in _by_seed(c)], dtype=float
    )


def seconds_per_step(c: ConfigResult) -> np.ndarray:
    """Seconds per step to the target, per seed of `c` (its runs' median), over the seeds whose runs reached it."""
    costs = []
    for runs in _by_seed(c):
        each = [
            run.seconds / run.steps for run in runs if run.reached and run.seconds is not None and run.steps
        ]
        if each:
            costs.append(float(np.median(each)))
    return np.asarray(costs, dtype=float)


def repeated_seeds(ranked: list[ConfigResult]) -> list[str]:
    """`config (seed 0 x3, seed 2 x2)` for each configuration that ran a seed more than once."""
    out = []
    for c in ranked:
        repeats = [f"seed {runs[0].seed} x{len(runs)}" for runs in _by_seed(c) if len(runs) > 1]
        if repeats:
            out.append(f"{c.config} ({', '.join(repeats)})")
    return out


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if values.size else None


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b elementwise, where inf / inf (both never reached) and 0 / 0 count as equal."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out = a / b
    return np.where((np.isinf(a) & np.isinf(b)) | ((a == 0) & (b == 0)), 1.0, out)


def bootstrap_ratio(
    sample: np.ndarray, reference: np.ndarray, resamples: int = RESAMPLES, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile bootstrap interval of median(sample) / median(reference), both resampled independently."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    a = np.median(rng.choice(sample, size=(resamples, sample.size), replace=True), axis=1)
    b = np.median(rng.choice(reference, size=(resamples, reference.size), replace=True), axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(_ratio(a, b), [alpha, 1 - alpha], method="inverted_cdf")
    return float(low), float(high)


def rank_test(sample: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """(two-sided p-value, direction) of the permutation test of the Mann-Whitney statistic: the rank sum of
    `sample` in the pooled runs (average ranks for ties; unreached runs, inf, are the slowest) against every split
    of the pooled runs into groups of the same sizes. direction: +1 when `sample` ranks slower than expected, -1
    faster, 0 neither."""
    pooled = np.concatenate([sample, reference])
    ranks = rankdata(pooled)
    n, total = sample.size, pooled.size
    centre = n * (total + 1) / 2
    observed = ranks[:n].sum() - centre
    if math.comb(total, n) <= EXACT_SPLITS:
        groups = _splits(total, n)
        extreme = np.abs(ranks[groups].sum(axis=1) - centre) >= abs(observed) - 1e-9
        p = float(extreme.mean())
    else:  # a random subset of the splits, the observed one counted in (an unbiased p-value)
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        groups = np.argsort(rng.random((PERMUTATIONS, total)), axis=1)[:, :n]
        extreme = np.abs(ranks[groups].sum(axis=1) - centre) >= abs(observed) - 1e-9
        p = float((extreme.sum() + 1) / (PERMUTATIONS + 1))
    return p, int(np.sign(round(observed, 9)))


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, tied values sharing their average rank (scipy.stats.rankdata's default; scipy is not imported
    here: the report runs where torch may be absent, and scipy's array-API layer inspects torch's module)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], values.size] - 1
    ranks = np.empty(values.size)
    ranks[order] = ((first + last) / 2 + 1)[np.cumsum(starts) - 1]
    return ranks


@functools.lru_cache(maxsize=32)
def _splits(total: int, n: int) -> np.ndarray:
    """Every choice of n of `total` positions, one per row."""
    return np.array(list(itertools.combinations(range(total), n)), dtype=np.intp).reshape(-1, n)


def smallest_p(n: int, m: int) -> float:
    """The smallest p-value the rank test can give for n against m runs (the most extreme split, no ties)."""
    return 2 / math.comb(n + m, n)


def seeds_needed(comparisons: int) -> int:
    """Seeds per configuration that always suffice to decide `comparisons` comparisons with the fastest at 5 %
    (Bonferroni's bound on the smallest p-value; the corrected test below needs no more)."""
    n = 2
    while smallest_p(n, n) * max(comparisons, 1) > ALPHA:
        n += 1
    return n


def _verdict(p: float, direction: int) -> str:
    if p > ALPHA or direction == 0:
        return TIED
    return SLOWER if direction > 0 else FASTER


def corrected_test(
    data: dict[str, np.ndarray], unmeasured: dict[str, bool], fastest: str
) -> dict[str, tuple[float, int, bool]]:
    """Per configuration other than the fastest: (p-value corrected for the comparisons and for picking the
    fastest from the same runs, direction, whether these seed counts could reach 5 % at all).

    Westfall and Young's max-T permutation procedure: the statistic is Dunn's standardized difference of mean
    ranks (of all runs pooled; unreached runs, inf, the slowest) between a configuration and the fastest. Under
    RELABELLINGS random relabellings of the runs the whole procedure is replayed, choosing the fastest again by the
    same rule, and a configuration's p-value is the share of relabellings whose largest |statistic| reaches its own:
    so the chance that a sweep of configurations that are all alike calls any of them different stays at 5 %,
    picking the fastest included (testing each against a fastest picked from the same runs, unreplayed, would call
    differences too often).
    """
    names = list(data)
    sizes = np.array([data[n].size for n in names])
    pooled = np.concatenate([data[n] for n in names])
    ranks = rankdata(pooled)
    total = pooled.size
    starts = np.concatenate([[0], np.cumsum(sizes)])
    always = np.array([not unmeasured[n] for n in names])
    scale = total * (total + 1) / 12

    def statistics(order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(fastest index per row, Dunn's statistic of every configuration against it) for rows of run order."""
        values, ranked = pooled[order], ranks[order]
        slices = [slice(a, b) for a, b in zip(starts[:-1], starts[1:], strict=True)]
        medians = np.stack([np.median(values[:, part], axis=1) for part in slices], axis=1)
        reached = np.stack([np.isfinite(values[:, part]).all(axis=1) for part in slices], axis=1)
        means = np.stack([ranked[:, part].mean(axis=1) for part in slices], axis=1)
        finite = np.isfinite(medians)
        first = np.where(finite & reached & always, medians, np.inf)
        pick = np.where(
            np.isfinite(first).any(axis=1),
            first.argmin(axis=1),
            np.where(finite, medians, np.inf).argmin(axis=1),
        )
        rows = np.arange(order.shape[0])
        spread = np.sqrt(scale * (1 / sizes + 1 / sizes[pick][:, None]))
        stat = (means - means[rows, pick][:, None]) / spread
        stat[rows, pick] = 0.0
        return pick, stat

    observed = statistics(np.arange(total)[None, :])[1][0]
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    _, permuted = statistics(np.argsort(rng.random((RELABELLINGS, total)), axis=1))
    largest = np.abs(permuted).max(axis=1)
    out = {}
    f = names.index(fastest)
    for i, name in enumerate(names):
        if i == f:
            continue
        # the most extreme outcome: every run of this configuration slower than every run of the fastest
        extreme = ((2 * total - sizes[i] + 1) / 2 - (1 + sizes[f]) / 2) / math.sqrt(
            scale * (1 / sizes[i] + 1 / sizes[f])
        )
        p = (1 + np.sum(largest >= abs(observed[i]) - 1e-9)) / (RELABELLINGS + 1)
        smallest = (1 + np.sum(largest >= extreme - 1e-9)) / (RELABELLINGS + 1)
        out[name] = (float(p), int(np.sign(round(float(observed[i]), 9))), bool(smallest <= ALPHA))
    return out


def _order_keys(ranked: list[ConfigResult], medians: dict[str, float | None]) -> dict[str, tuple[int, float]]:
    """Configurations whose every run reached the target first (as in the ranking), then by median."""
    return {
        c.config: (0 if c.all_reached else 1, math.inf if medians[c.config] is None else medians[c.config])
        for c in ranked
    }


def _ranks(keys: dict[str, tuple[int, float]]) -> dict[str, int]:
    """Competition ranks (1, 2, 2, 4, ...): equal keys share a rank."""
    return {name: 1 + sum(other < key for other in keys.values()) for name, key in keys.items()}


def compare_measure(
    ranked: list[ConfigResult], measure: str
) -> tuple[dict[str, Ratio], str | None, bool, bool, int]:
    """Every configuration against the fastest on one measure; (ratios, the fastest's name, any one-seed case,
    any comparison with too few seeds for the rank test, the number of tested comparisons)."""
    data = {c.config: samples(c, measure) for c in ranked}
    medians = {name: _median(values) for name, values in data.items()}
    keys = _order_keys(ranked, medians)
    ranks = _ranks(keys)
    # the fastest: the smallest median among the configurations that always reached the target (any finite
    # median if none did); among equal keys the one the ranking puts first
    finite = [name for name in data if math.isfinite(keys[name][1])]
    fastest = min(finite, key=lambda name: keys[name], default=None)
    out: dict[str, Ratio] = {}
    tested: list[str] = []
    one_seed = False
    for name, values in data.items():
        median = medians[name]
        if fastest is None or median is None:
            out[name] = Ratio(
                ranks[name], median, None, None, None, NO_RUN if median is None else NONE_REACHED
            )
            continue
        reference = medians[fastest]
        # inf when this configuration's median run never reached the target
        ratio = median / reference if reference > 0 else 1.0 if median == 0 else math.inf
        if name == fastest:
            out[name] = Ratio(ranks[name], median, 1.0, 1.0, 1.0, FASTEST)
        elif min(values.size, data[fastest].size) < 2:
            one_seed = True
            out[name] = Ratio(ranks[name], median, ratio, None, None, ONE_SEED)
        else:
            low, high = bootstrap_ratio(values, data[fastest])
            out[name] = Ratio(ranks[name], median, ratio, low, high, TIED)
            tested.append(name)
    too_few = False
    if tested:
        by_config = {c.config: c for c in ranked}
        family = [fastest, *tested]
        # only failed and unfinished runs stay with their configuration in the relabellings (they are not in the
        # data); whether the measured runs all reached is worked out again in each relabelling
        results = corrected_test(
            {name: data[name] for name in family},
            {name: any(r.status not in MEASURED for r in by_config[name].runs) for name in family},
            fastest,
        )
        for name, (p, direction, decidable) in results.items():
            verdict = _verdict(p, direction) if decidable else TOO_FEW
            too_few = too_few or not decidable
            out[name] = replace(out[name], verdict=verdict, p=p)
    return out, fastest, one_seed, too_few, len(tested)


def holm(p_values: list[float]) -> list[bool]:
    """Which of the hypotheses Holm's step-down procedure rejects at ALPHA (family-wise)."""
    rejected = [False] * len(p_values)
    for step, i in enumerate(sorted(range(len(p_values)), key=lambda i: p_values[i])):
        if p_values[i] * (len(p_values) - step) > ALPHA:
            break
        rejected[i] = True
    return rejected


def disagreements(
    ranked: list[ConfigResult], seconds: dict[str, Ratio], steps: dict[str, Ratio]
) -> list[str]:
    """Sentences for the pairs that steps and seconds order oppositely, where the pair's steps really cost
    differently: "a needs fewer steps than b but more seconds": a's steps cost more (an optimizer with more state, a
    normalization layer, a larger batch).

    A pair is listed when the exact rank test of its seconds per step (over the seeds that reached the target)
    finds a's higher, Holm-corrected over all the pairs whose order flips: pairs that flip within noise are not
    listed, and a sweep of configurations that are all alike lists one at most 5 % of the time.
    """
    costs = {c.config: seconds_per_step(c) for c in ranked}
    flipped: list[tuple[str, str, float]] = []
    for a, sa in seconds.items():
        for b, sb in seconds.items():
            ta, tb = steps[a], steps[b]
            if None in (sa.median, sb.median, ta.median, tb.median):
                continue
            if ta.median < tb.median and sa.median > sb.median:
                p, direction = (
                    (1.0, 0) if min(costs[a].size, costs[b].size) < 2 else rank_test(costs[a], costs[b])
                )
                flipped.append((a, b, p if direction > 0 else 1.0))
    out = [
        f"{a} needs fewer steps than {b} (median {steps[a].median:g} against {steps[b].median:g}) but more "
        f"seconds ({seconds[a].median:.3g} s against {seconds[b].median:.3g} s): its steps cost more"
        for (a, b, _), listed in zip(flipped, holm([p for _, _, p in flipped]), strict=True)
        if listed
    ]
    if len(out) > MAX_DISAGREEMENTS:
        out = out[:MAX_DISAGREEMENTS] + [f"… and {len(out) - MAX_DISAGREEMENTS} more such pairs"]
    return out


def compare(ranked: list[ConfigResult]) -> Significance:
    """Seconds and steps of every configuration against the fastest one's, with intervals and verdicts."""
    seconds, fastest_s, one_s, few_s, tests_s = compare_measure(ranked, "seconds")
    steps, fastest_t, one_t, few_t, tests_t = compare_measure(ranked, "steps")
    return Significance(
        seconds=seconds,
        steps=steps,
        fastest_seconds=fastest_s,
        fastest_steps=fastest_t,
        disagreements=disagreements(ranked, seconds, steps),
        one_seed=one_s or one_t,
        too_few=few_s or few_t,
        seeds_needed=seeds_needed(max(tests_s, tests_t)) if max(tests_s, tests_t) else 0,
        repeated=repeated_seeds(ranked),
    )
