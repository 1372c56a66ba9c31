"""What the report says about which differences are real: CSV columns, table cells and a report section, all from
one `Significance` (significance.py), so report.csv, report.md / report.html and the terminal agree."""

from __future__ import annotations

import math

from trainspeed.report.aggregate import ConfigResult
from trainspeed.report.significance import (
    ALPHA,
    CONFIDENCE,
    FASTER,
    NONE_REACHED,
    ONE_SEED,
    RELABELLINGS,
    RESAMPLES,
    SLOWER,
    TIED,
    TOO_FEW,
    Ratio,
    Significance,
)

CSV_COLUMNS = [
    "seconds_rank",
    "seconds_ratio",
    "seconds_ratio_low",
    "seconds_ratio_high",
    "seconds_p",
    "seconds_vs_fastest",
    "steps_rank",
    "steps_ratio",
    "steps_ratio_low",
    "steps_ratio_high",
    "steps_p",
    "steps_vs_fastest",
]
LEVEL = f"{CONFIDENCE:.0%}"
TEST = f"rank test corrected for the comparisons, p <= {ALPHA:.2g}"


def _num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return ""
    return "inf" if math.isinf(value) else f"{value:.{digits}g}"


def csv_cells(sig: Significance, c: ConfigResult) -> list[str]:
    """The CSV_COLUMNS values of one configuration (empty where there is nothing to say)."""
    cells: list[str] = []
    for ratios in (sig.seconds, sig.steps):
        r = ratios.get(c.config)
        if r is None:
            cells += [""] * 6
        else:
            cells += [str(r.rank), _num(r.ratio, 6), _num(r.low, 6), _num(r.high, 6), _num(r.p, 4), r.verdict]
    return cells


def ratio_cell(r: Ratio | None) -> str:
    """`1.52× [1.21–1.90] slower (p 0.012)`, `1.05× [0.93–1.21] tied (p 1)`, `1.3× [0.9–2.1] too few seeds`,
    `fastest`, `2.1× (one seed: no interval)`."""
    if r is None or r.ratio is None:
        return "" if r is None else r.verdict
    if r.verdict == "fastest":
        return "fastest"
    if r.low is None or r.high is None:
        return f"{_num(r.ratio)}× ({r.verdict})"
    tested = f" (p {_num(r.p, 2)})" if r.p is not None and r.verdict != TOO_FEW else ""
    return f"{_num(r.ratio)}× [{_num(r.low)}–{_num(r.high)}] {r.verdict}{tested}"


def short_cell(r: Ratio | None) -> str:
    """The terminal's compact form: `1.52× slower`, `1.05× tied`, `fastest`, `2.1× (one seed)`."""
    if r is None or r.ratio is None:
        return "" if r is None else r.verdict
    if r.verdict == "fastest":
        return "fastest"
    verdict = "one seed" if r.low is None else r.verdict
    return f"{_num(r.ratio)}× {verdict}"


def terminal_cells(sig: Significance, c: ConfigResult) -> list[str]:
    """Seconds and steps against the fastest, the steps cell with the steps rank (the intervals are in report.md)."""
    s, t = sig.seconds.get(c.config), sig.steps.get(c.config)
    steps = "" if t is None else f"#{t.rank} {short_cell(t)}"
    return [short_cell(s), steps]


TERMINAL_HEADERS = ["× fastest s", "steps rank, × fastest"]


def explanation(sig: Significance) -> str:
    """How to read the columns, said once under the table."""
    text = (
        f"Which differences are real: for seconds and for steps separately, each configuration's median time to "
        f"target divided by the fastest configuration's median ({sig.fastest_seconds or 'none'} in seconds, "
        f"{sig.fastest_steps or 'none'} in steps), with a {LEVEL} percentile bootstrap interval over seeds "
        f"({RESAMPLES} resamples of each configuration's runs, fixed generator seed): how far apart the two may be "
        f"(with few seeds it is optimistic, never wider than the seeds' spread). The verdict comes from a rank test "
        f"(Dunn's standardized difference of mean ranks) corrected for the comparisons with the fastest and for "
        f"picking the fastest from the same runs: the whole comparison is replayed on {RELABELLINGS} random "
        f"relabellings of the runs (Westfall-Young max-T), so a sweep of configurations that are all alike calls "
        f"any of them different at most {ALPHA:.0%} of the time. *slower* / *faster*: p <= {ALPHA:.2g}; *tied*: "
        f"not distinguishable with these seeds, which is not the same as equal; *{TOO_FEW}*: no result of these "
        f"seed counts could reach p <= {ALPHA:.2g}, so nothing is decided{_suffice(sig)}. A run that never reached "
        f"the target counts as infinitely slow (inf), as does a "
        f"run a search's budget pruned (it was already slower than the best trial x prune_factor); failed runs are "
        f"left out. The seconds rank and the steps rank (configurations that always reached the target first, as in "
        f"the ranking, then by median; equal medians share a rank) stand side by side: a technique with costly "
        f"steps can lead on steps and trail on seconds."
    )
    if sig.repeated:
        text += (
            " Some seeds were run more than once: "
            + "; ".join(sig.repeated)
            + ". Repeats of a seed are not new seeds: the medians, intervals and tests of this section count each "
            "seed once (the median of its runs), while the ranking's counts and min–max include every run."
        )
    if sig.one_seed:
        text += (
            " Some comparisons rest on one seed: they have no interval (one seed: no interval), so nothing can be "
            "said about their difference; run more seeds (seed=0,1,2,3,4) to tell."
        )
    return text


def _suffice(sig: Significance) -> str:
    if not sig.seeds_needed:
        return ""
    return f" ({sig.seeds_needed} seeds per configuration always suffice for this many comparisons)"


def disagreement_text(sig: Significance) -> str:
    if not sig.disagreements:
        return (
            "Seconds and steps agree: no pair that the two rankings order oppositely has steps that clearly cost "
            f"differently (rank test of seconds per step, Holm-corrected over those pairs, p <= {ALPHA:.2g})."
        )
    return (
        f"Where seconds and steps disagree (their steps clearly cost differently: rank test of seconds per step, "
        f"Holm-corrected over the pairs the two rankings order oppositely, p <= {ALPHA:.2g}): "
        + "; ".join(sig.disagreements)
        + "."
    )


def tied_line(sig: Significance) -> str:
    """One line for the terminal: every other configuration against the fastest in seconds, grouped by verdict."""
    if sig.fastest_seconds is None:
        return "no configuration's median run reached the target"
    groups = {
        TIED: f"tied with it (not distinguishable with these seeds: rank test corrected for the comparisons, "
        f"p > {ALPHA:.2g})",
        SLOWER: f"significantly slower ({TEST})",
        FASTER: f"faster ({TEST}) but not a result in every run (a seed missed the target or failed)",
        TOO_FEW: f"too few seeds to tell (run {sig.seeds_needed} per configuration)",
        ONE_SEED: "one seed, no interval: nothing can be said",
        NONE_REACHED: "median run never reached the target",
    }
    parts = [f"fastest in seconds: {sig.fastest_seconds}"]
    for verdict, text in groups.items():
        names = [name for name, r in sig.seconds.items() if r.verdict == verdict]
        if names:
            parts.append(f"{text}: {', '.join(names)}")
    return "; ".join(parts)


def significance_blocks(sig: Significance, ranked: list[ConfigResult]) -> list[tuple]:
    """The report section: a table of both measures against the fastest, how to read it, and the disagreements."""
    rows = []
    for c in sorted(ranked, key=lambda c: (sig.seconds[c.config].rank, c.rank)):
        s, t = sig.seconds[c.config], sig.steps[c.config]
        rows.append(
            [
                str(s.rank),
                c.config,
                _num(s.median, 4),
                ratio_cell(s),
                str(t.rank),
                _num(t.median, 4),
                ratio_cell(t),
            ]
        )
    headers = [
        "s rank",
        "configuration",
        "median s (unreached: inf)",
        f"s × fastest [{LEVEL} bootstrap] verdict (p)",
        "steps rank",
        "median steps (unreached: inf)",
        f"steps × fastest [{LEVEL} bootstrap] verdict (p)",
    ]
    return [
        ("h2", "Which differences are real"),
        ("table", headers, rows),
        ("p", explanation(sig)),
        ("p", disagreement_text(sig)),
    ]
