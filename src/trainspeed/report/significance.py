"""Which differences are real: each configuration's time to target against the fastest one's, over seeds.

For seconds and for steps separately, the fastest configuration is the one with the smallest median among those
whose every run reached the target (the ranking, too, puts reliability first). Every other configuration gets the
ratio of its median to the fastest one's, with a 95 % percentile bootstrap interval: both samples resampled with
replacement, independently, from a generator with a fixed seed, so the same sweep always gives the same report.
A configuration whose interval covers 1 is *tied* with the fastest.

The bootstrap rather than an exact rank test: with the 2-3 seeds a sweep usually has, a two-sided Mann-Whitney test
cannot reach 5 % at all (3 against 3 seeds gives p ≥ 0.1), so it would call every difference noise; the bootstrap
gives an interval on the quantity the ranking uses (the ratio of medians). With so few seeds that interval is
optimistic (it is never wider than the spread of the samples): "slower" then means, in practice, that the seeds'
times hardly overlap, not a p-value. More seeds make it a real interval.

A run that never reached the target (it stalled or diverged) counts as infinitely slow: a configuration that reached
the target in 2 of 3 seeds has a finite median, one that reached it in 1 of 3 an infinite one. Failed and unfinished
runs measured nothing and are left out. The resampling is a few vectorized numpy lines (scipy.stats.bootstrap would
do the same; this keeps the infinite times of unreached runs explicit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from trainspeed.report.aggregate import ConfigResult

CONFIDENCE = 0.95
RESAMPLES = 4000
BOOTSTRAP_SEED = 0
MEASURED = ("completed", "diverged")  # statuses whose runs say something about time to target

FASTEST, TIED, SLOWER, FASTER = "fastest", "tied", "slower", "faster"
ONE_SEED = "one seed: no interval"
NONE_REACHED = "no configuration's median run reached the target"
NO_RUN = "no measured run"
AHEAD = (FASTEST, TIED)
MAX_DISAGREEMENTS = 10


@dataclass(frozen=True)
class Ratio:
    """One configuration against the fastest, on one measure (seconds or steps)."""

    rank: int  # by median, 1 = fastest; equal medians share a rank
    median: float | None  # over measured runs, a run that never reached counting as infinite; None: no run
    ratio: float | None  # median / the fastest configuration's median
    low: float | None  # the confidence interval of the ratio; None when it cannot be computed
    high: float | None
    verdict: str  # fastest | tied | slower | faster | ONE_SEED | NONE_REACHED | NO_RUN

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


def samples(c: ConfigResult, measure: str) -> np.ndarray:
    """Time to target of every measured run of `c` in `measure` ("seconds" | "steps"); inf where never reached."""
    values = []
    for run in c.runs:
        if run.status not in MEASURED:
            continue
        value = getattr(run, measure)
        values.append(float(value) if run.reached and value is not None else math.inf)
    return np.asarray(values, dtype=float)


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if values.size else None


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b elementwise, where inf / inf (both never reached) counts as equal."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out = a / b
    return np.where(np.isinf(a) & np.isinf(b), 1.0, out)


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


def _verdict(low: float, high: float) -> str:
    if low <= 1.0 <= high:
        return TIED
    return SLOWER if low > 1.0 else FASTER


def _order_keys(ranked: list[ConfigResult], medians: dict[str, float | None]) -> dict[str, tuple[int, float]]:
    """Configurations whose every run reached the target first (as in the ranking), then by median."""
    return {
        c.config: (0 if c.all_reached else 1, math.inf if medians[c.config] is None else medians[c.config])
        for c in ranked
    }


def _ranks(keys: dict[str, tuple[int, float]]) -> dict[str, int]:
    """Competition ranks (1, 2, 2, 4, ...): equal keys share a rank."""
    return {name: 1 + sum(other < key for other in keys.values()) for name, key in keys.items()}


def compare_measure(ranked: list[ConfigResult], measure: str) -> tuple[dict[str, Ratio], str | None, bool]:
    """Every configuration against the fastest on one measure; (ratios, the fastest's name, any one-seed case)."""
    data = {c.config: samples(c, measure) for c in ranked}
    medians = {name: _median(values) for name, values in data.items()}
    keys = _order_keys(ranked, medians)
    ranks = _ranks(keys)
    # the fastest: the smallest median among the configurations that always reached the target (any finite
    # median if none did); among equal keys the one the ranking puts first
    finite = [name for name in data if math.isfinite(keys[name][1])]
    fastest = min(finite, key=lambda name: keys[name], default=None)
    out: dict[str, Ratio] = {}
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
        ratio = median / reference if reference > 0 else math.inf
        if name == fastest:
            out[name] = Ratio(ranks[name], median, 1.0, 1.0, 1.0, FASTEST)
        elif min(values.size, data[fastest].size) < 2:
            one_seed = True
            out[name] = Ratio(ranks[name], median, ratio, None, None, ONE_SEED)
        else:
            low, high = bootstrap_ratio(values, data[fastest])
            out[name] = Ratio(ranks[name], median, ratio, low, high, _verdict(low, high))
    return out, fastest, one_seed


def _clear_gap(x: Ratio, y: Ratio) -> bool:
    """One of the two is the fastest or tied with it, the other significantly slower."""
    return {x.verdict, y.verdict} & set(AHEAD) != set() and SLOWER in (x.verdict, y.verdict)


def disagreements(seconds: dict[str, Ratio], steps: dict[str, Ratio]) -> list[str]:
    """Sentences for the pairs that steps and seconds order oppositely, where the gap is real in one of the two.

    "a needs fewer steps than b but more seconds": a's steps cost more (an optimizer with more state, a
    normalization layer, a larger batch). Pairs whose order flips only within noise (both tied with the fastest on
    both measures) are not listed.
    """
    out = []
    for a, sa in seconds.items():
        for b, sb in seconds.items():
            ta, tb = steps[a], steps[b]
            if None in (sa.median, sb.median, ta.median, tb.median):
                continue
            flipped = ta.median < tb.median and sa.median > sb.median
            if flipped and (_clear_gap(sa, sb) or _clear_gap(ta, tb)):
                out.append(
                    f"{a} needs fewer steps than {b} (median {ta.median:g} against {tb.median:g}) but more "
                    f"seconds ({sa.median:.3g} s against {sb.median:.3g} s): its steps cost more"
                )
    if len(out) > MAX_DISAGREEMENTS:
        out = out[:MAX_DISAGREEMENTS] + [f"… and {len(out) - MAX_DISAGREEMENTS} more such pairs"]
    return out


def compare(ranked: list[ConfigResult]) -> Significance:
    """Seconds and steps of every configuration against the fastest one's, with intervals and verdicts."""
    seconds, fastest_s, one_s = compare_measure(ranked, "seconds")
    steps, fastest_t, one_t = compare_measure(ranked, "steps")
    return Significance(
        seconds=seconds,
        steps=steps,
        fastest_seconds=fastest_s,
        fastest_steps=fastest_t,
        disagreements=disagreements(seconds, steps),
        one_seed=one_s or one_t,
    )
