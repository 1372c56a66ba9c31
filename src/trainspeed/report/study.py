"""The Optuna study in the sweep report: best trial, trials table, optimization history, parameter importances.

The sweeper writes `optuna/study.json` into the sweep folder after every batch of trials (every trial of the
study, including those other processes added to a shared storage); the report reads that file, so it never needs
the storage or its credentials, and `python -m trainspeed.report` rebuilds it like the rest of the report. The
plots are Optuna's matplotlib visualizations of an in-memory copy of the study.
"""

from __future__ import annotations

import io
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

from trainspeed.record.atomic import write_json_atomic

STUDY_FILE = Path("optuna") / "study.json"
HISTORY_PLOT = "optuna_history.png"
IMPORTANCE_PLOT = "optuna_importance.png"


def _value(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None  # JSON has no infinity


def write_study_record(study: Any, sweep_dir: Path) -> Path:
    """optuna/study.json: the study's trials with their parameters, distributions, outcome and job folders."""
    from optuna.distributions import distribution_to_json

    trials = [
        {
            "number": t.number,
            "state": t.state.name,
            "status": t.user_attrs.get("status", t.state.name.lower()),
            "value": _value(t.value) if t.state.name == "COMPLETE" else None,  # a pruned trial has no score
            "params": t.params,
            "distributions": {k: distribution_to_json(d) for k, d in t.distributions.items()},
            "intermediate": {str(k): v for k, v in t.intermediate_values.items()},
            "seconds": t.user_attrs.get("seconds"),
            "jobs": t.user_attrs.get("jobs", []),
        }
        for t in study.get_trials(deepcopy=False)
    ]
    path = Path(sweep_dir) / STUDY_FILE
    write_json_atomic(path, {"study_name": study.study_name, "direction": "minimize", "trials": trials})
    return path


def read_study_record(sweep_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(sweep_dir) / STUDY_FILE).read_text())
    except (OSError, ValueError):
        return None


def _in_memory_study(record: dict[str, Any]) -> Any:
    """The recorded trials as an in-memory Optuna study, for Optuna's plots (unscored trials count as +inf)."""
    import optuna
    from optuna.distributions import json_to_distribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # not one line per unscored trial the plots leave out
    study = optuna.create_study(direction="minimize")
    for t in record["trials"]:
        state = TrialState[t["state"]]
        if state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            continue  # still running
        value = t["value"] if t["value"] is not None else math.inf
        study.add_trial(
            create_trial(
                state=state,
                value=value if state == TrialState.COMPLETE else None,
                params=t["params"],
                distributions={
                    k: _containing(json_to_distribution(d), t["params"][k])
                    for k, d in t["distributions"].items()
                },
                intermediate_values={int(k): v for k, v in t["intermediate"].items()},
            )
        )
    return study


def _containing(distribution: Any, value: Any) -> Any:
    """The distribution widened to hold `value`: an enqueued trial may lie outside the searched range."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if distribution._contains(distribution.to_internal_repr(value)):
        return distribution
    if isinstance(distribution, CategoricalDistribution):
        return CategoricalDistribution([*distribution.choices, value])
    if isinstance(distribution, FloatDistribution | IntDistribution):
        low, high = min(distribution.low, value), max(distribution.high, value)
        if isinstance(distribution, IntDistribution):
            return IntDistribution(low, high, log=distribution.log)
        return FloatDistribution(low, high, log=distribution.log)
    return distribution


def _png(axes: Any) -> bytes:
    import matplotlib.pyplot as plt

    figure = axes.figure if hasattr(axes, "figure") else axes
    figure.set_size_inches(7, 4)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def study_plots(sweep_dir: Path) -> dict[str, bytes]:
    """Optimization history and parameter importances (fANOVA); a plot the study cannot give yet is left out.
    Never raises: the rest of the report matters more than these plots."""
    try:
        return _study_plots(sweep_dir)
    except Exception as err:
        message = f"{type(err).__name__}: {err}".replace("\n", " ")
        print(f"warning: Optuna study plots for {sweep_dir} were not drawn: {message}", file=sys.stderr)
        return {}


def _study_plots(sweep_dir: Path) -> dict[str, bytes]:
    record = read_study_record(sweep_dir)
    if not record:
        return {}
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as optuna_plots

    study = _in_memory_study(record)
    finite = [t["value"] for t in record["trials"] if t["value"] is not None]
    penalty = 2 * max(finite) if finite else 1.0

    def scored(trial: Any) -> float:
        # importances over every complete trial: one that missed the target counts as twice the slowest reached
        return trial.value if math.isfinite(trial.value) else penalty

    images: dict[str, bytes] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
        plots = {
            HISTORY_PLOT: lambda: optuna_plots.plot_optimization_history(study),
            IMPORTANCE_PLOT: lambda: optuna_plots.plot_param_importances(
                study, target=scored, target_name="seconds (missed: 2 x slowest)"
            ),
        }
        for name, plot in plots.items():
            try:
                images[name] = _png(plot())
            except (ValueError, RuntimeError, ZeroDivisionError):  # e.g. fewer than 2 scored trials
                continue
    return images


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _status_text(trial: dict[str, Any]) -> str:
    stopped_at = list(trial["intermediate"].values())
    if trial["status"] == "pruned" and stopped_at:
        return f"pruned at {stopped_at[-1]:.4g} s"
    return trial["status"]


def job_text(job: str, sweep_dir: Path) -> str:
    """A trial's job folder relative to the sweep folder (`3`), in full when outside it: trials of a storage shared
    by several sweep folders are told apart."""
    path = Path(job)
    try:
        return str(path.resolve().relative_to(Path(sweep_dir).resolve()))
    except ValueError:
        return str(path)


def study_blocks(sweep_dir: Path, plot_names: list[str]) -> list[tuple]:
    """Report blocks for the study, or none when the sweep was not an Optuna search."""
    record = read_study_record(sweep_dir)
    if not record:
        return []
    trials = record["trials"]
    keys = sorted({k for t in trials for k in t["params"]})
    counts = {s: sum(t["status"] == s for t in trials) for s in dict.fromkeys(t["status"] for t in trials)}
    scored = [t for t in trials if t["value"] is not None]
    best = min(scored, key=lambda t: t["value"]) if scored else None
    out: list[tuple] = [
        ("h2", f"Optuna study: {record['study_name']}"),
        (
            "p",
            f"{len(trials)} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + ". Objective: "
            "median training seconds to the target over the trial's seeds; a trial that missed the target, diverged "
            "or failed scores +inf; a pruned trial was stopped once slower than the best finished one x the factor.",
        ),
    ]
    if best is not None:
        params = ", ".join(f"{k}={_cell(v)}" for k, v in best["params"].items())
        out.append(("p", f"Best trial: #{best['number']}, {_cell(best['value'])} s — {params}"))
    rows = [
        [t["number"], _status_text(t), _cell(t["value"])]
        + [_cell(t["params"].get(k)) for k in keys]
        + [" ".join(job_text(j, sweep_dir) for j in t["jobs"])]
        for t in trials
    ]
    out.append(("table", ["trial", "status", "median s", *keys, "jobs"], rows))
    captions = {
        HISTORY_PLOT: "optimization history (trials that reached the target)",
        IMPORTANCE_PLOT: "parameter importances (fANOVA; a trial that missed the target counts as 2 x the slowest)",
    }
    out += [("img", caption, name) for name, caption in captions.items() if name in plot_names]
    return out
