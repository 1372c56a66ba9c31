"""The sweeper's settings (conf/hydra/sweeper/optuna.yaml), checked once before a study is opened.

Hydra hands the sweeper its settings unchecked. They are checked here, before a study is opened or a trial asked:
`n_trials=0` is refused rather than running nothing, an empty `seeds` list before any trial could be left running
in the storage, a mistyped sampler name in one line rather than a traceback. Each problem is a ConfigError naming
the key, the value and what is accepted, with the rules the job configs are checked with
(trainspeed.validation.rules).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trainspeed.errors import ConfigError
from trainspeed.search.sampler import make_sampler
from trainspeed.validation.rules import AnyOf, Exactly, Integer, MappingRule, Number, Seq, Text, check_schema
from trainspeed.validation.schemas import TOP_LEVEL

PREFIX = "hydra.sweeper"
SEED = TOP_LEVEL["seed"]  # every trial runs these seeds as its jobs' `seed`

SWEEPER: dict[str, Any] = {
    "study_name": Text(),
    "storage": Text(nullable=True),
    "n_trials": Integer(ge=1),
    "n_jobs": Integer(ge=1),
    "seeds": Seq(SEED),
    # below 1 the budget would prune a rerun of the best setting itself; 0 is refused, not read as "never"
    "prune_factor": AnyOf(
        (Number(ge=1, lt=math.inf), Exactly(None)),
        text="a number ≥ 1 (stop a job once its training seconds exceed the best trial's x this) "
        "or null (never prune)",
    ),
    "params": MappingRule(),
    "enqueue": Seq(MappingRule(), min_len=0, nullable=True),
}
REQUIRED = ("study_name", "n_trials", "n_jobs", "seeds")
SAMPLER: dict[str, Any] = {
    "name": Text(),
    "seed": Integer(ge=0, le=2**32 - 1, nullable=True),
    "kwargs": MappingRule(),
}


@dataclass(frozen=True)
class SearchSettings:
    """The checked settings of one launch of the sweeper."""

    study_name: str
    storage: str | None
    n_trials: int
    n_jobs: int
    seeds: list[int]
    prune_factor: float | None
    sampler_name: str = "TPESampler"
    sampler_seed: int | None = None
    sampler_kwargs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # the search space (search/space.py)
    enqueue: list[dict[str, Any]] = field(default_factory=list)  # settings of the first trials


def search_settings(raw: Mapping[str, Any]) -> SearchSettings:
    """Check the sweeper's settings (plain values) and return them typed; ConfigError on the first problem.
    The sampler is built once here, so that arguments it refuses are reported before anything is written."""
    unknown = [key for key in raw if key not in SWEEPER and key != "sampler"]
    if unknown:
        accepted = ", ".join([*SWEEPER, "sampler"])
        raise ConfigError(
            f"{PREFIX}.{unknown[0]}", raw[unknown[0]], accepted, problem="not a sweeper setting"
        )
    check_schema({**dict.fromkeys(REQUIRED), **raw}, PREFIX, SWEEPER)  # a removed setting is refused as null
    sampler = raw.get("sampler") or {}
    MappingRule().check(f"{PREFIX}.sampler", sampler)
    check_schema(sampler, f"{PREFIX}.sampler", SAMPLER)
    name, seed, kwargs = (
        sampler.get("name", "TPESampler"),
        sampler.get("seed"),
        dict(sampler.get("kwargs") or {}),
    )
    make_sampler(name, seed, kwargs)
    factor = raw.get("prune_factor")
    return SearchSettings(
        study_name=raw["study_name"],
        storage=raw.get("storage"),
        n_trials=raw["n_trials"],
        n_jobs=raw["n_jobs"],
        seeds=list(raw["seeds"]),
        prune_factor=None if factor is None else float(factor),
        sampler_name=name,
        sampler_seed=seed,
        sampler_kwargs=kwargs,
        params=dict(raw.get("params") or {}),
        enqueue=[dict(e) for e in raw.get("enqueue") or [] if e],
    )
