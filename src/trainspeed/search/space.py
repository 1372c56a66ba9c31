"""The search space: Hydra sweep overrides (choice / range / interval, tag(log, ...)) as Optuna distributions.

The syntax is the one Hydra's own Optuna sweeper documents, so a search space reads the same in both:
`optimizer.lr: tag(log, interval(1e-4, 1))`, `optimizer: choice(adam, adamw)`, `model.depth: range(1, 5)`,
`model.width: tag(int, interval(64, 512))`. A plain value is fixed for every trial; `seed` is not searched: its
values are the seeds every trial runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException, OverrideParseException
from omegaconf import OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import BaseTrial

from trainspeed.config_paths import config_dir
from trainspeed.errors import ConfigError, unknown_name
from trainspeed.record.run_folder import override_key
from trainspeed.validation.schemas import TOP_LEVEL

PARAMS = "hydra.sweeper.params"
SEED = TOP_LEVEL["seed"]  # the seeds every trial runs are job seeds

PRIMITIVE = (str, int, float, bool, type(None))


@dataclass
class SearchSpace:
    """What every trial samples (distributions), what every job gets (fixed overrides) and the seeds."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])

    def suggest(self, trial: BaseTrial) -> dict[str, Any]:
        """A value for every searched key (Optuna's sampler chooses; enqueued trials get their fixed values)."""
        return {key: _suggest(trial, key, dist) for key, dist in self.distributions.items()}

    def job_overrides(self, params: Mapping[str, Any]) -> list[list[str]]:
        """One job per seed: the fixed overrides, the trial's values, the seed."""
        searched = [f"{key}={_override_value(value)}" for key, value in params.items()]
        return [[*self.fixed, *searched, f"seed={seed}"] for seed in self.seeds]


def _suggest(trial: BaseTrial, key: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(key, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(key, dist.low, dist.high, log=dist.log, step=dist.step)
    return trial.suggest_categorical(key, dist.choices)


def _override_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return "null" if value is None else str(value)


def _categorical(key: str, text: str, values: list[Any]) -> CategoricalDistribution:
    # Optuna stores only primitive choices: a list such as betas [0.9,0.999] is kept as its override text
    choices = [v if isinstance(v, PRIMITIVE) else _list_text(v) for v in values]
    if not choices:
        raise ConfigError(key, text, "choice(...) or range(...) with at least one value")
    return CategoricalDistribution(choices)


def _list_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(_list_text(v) for v in value) + "]"
    return _override_value(value)


def _distribution(override: Override, where: str, text: str) -> BaseDistribution:
    """The Optuna distribution of a sweep override; `where` and `text` are the key and the value as the user
    wrote them (for errors)."""
    sweep = override.value()
    if isinstance(sweep, ChoiceSweep):
        return _categorical(where, text, list(override.sweep_iterator()))
    if isinstance(sweep, RangeSweep):
        values = list(override.sweep_iterator())
        if all(isinstance(v, int) for v in values) and len(values) > 1:
            return IntDistribution(values[0], values[-1], step=values[1] - values[0])
        return _categorical(where, text, values)
    if isinstance(sweep, IntervalSweep):
        return _interval(sweep, where, text)
    raise ConfigError(
        where,
        text,
        "choice(...), range(...), interval(a, b) (tag(log, ...) for a log scale) or a plain value",
    )


def _interval(sweep: IntervalSweep, where: str, text: str) -> BaseDistribution:
    """interval(a, b) as a float or (tag int) integer distribution; Optuna's bounds refused as a ConfigError."""
    log, integer = "log" in sweep.tags, "int" in sweep.tags
    low = "1 ≤ a" if log and integer else "0 < a" if log else "a"
    accepted = f"{'tag(log, ' if log else ''}interval(a, b){')' if log else ''} with {low} ≤ b"
    try:
        if integer:
            return IntDistribution(int(sweep.start), int(sweep.end), log=log)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log)
    except ValueError as err:
        raise ConfigError(where, text, accepted, problem=str(err).splitlines()[0]) from None


def _parse(parser: OverridesParser, text: str, where: str) -> Override:
    try:
        return parser.parse_override(text)
    except OverrideParseException as err:
        value = text.split("=", 1)[-1]
        accepted = "choice(...), range(...), interval(a, b), tag(log, interval(a, b)) or a plain value"
        raise ConfigError(where, value, accepted, problem=str(err).splitlines()[0]) from None


def parse_space(
    parser: OverridesParser,
    params: Mapping[str, Any],
    arguments: Iterable[str],
    default_seeds: Iterable[int] = (0,),
) -> SearchSpace:
    """The search space from the sweeper's `params` and the command line (which wins for the same key); the seeds
    are a `seed` override's values, else `default_seeds` (hydra.sweeper.seeds)."""
    texts = {str(k): (f"{PARAMS}.{k}", f"{k}={v}") for k, v in (params or {}).items()}
    for override in parser.parse_overrides(list(arguments)):
        key = override.get_key_element()
        texts[key] = (key, override.input_line or "")
    space = SearchSpace(seeds=list(default_seeds))
    for key, (where, text) in texts.items():
        override, value = _parse(parser, text, where), text.split("=", 1)[-1]
        if key == "seed":
            seeds = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
            space.seeds = _seeds(seeds, where, value)
        elif override.is_sweep_override():
            space.distributions[key] = _distribution(override, where, value)
            _check_group_options(key, space.distributions[key], where, value)
        else:
            space.fixed.append(override.input_line or f"{key}={override.get_value_element_as_str()}")
    return space


def _check_group_options(key: str, dist: BaseDistribution, where: str, text: str) -> None:
    """The choices of a config group (`optimizer=choice(momentum,nesterov)`) must be its options: a mistyped one
    would fail only when the sampler drew it, ending the whole search (Hydra's error, not one line)."""
    group = Path(config_dir()) / key
    if "." in key or not isinstance(dist, CategoricalDistribution) or not group.is_dir():
        return
    options = sorted(p.stem for p in group.glob("*.yaml"))
    for choice in dist.choices:
        if str(choice) not in options:
            raise unknown_name(where, str(choice), options)


def check_choices_hold_keys(space: SearchSpace, compose: Callable[[list[str]], Any]) -> None:
    """Every option a searched config group draws (`optimizer: choice(momentum, adam)`) has the keys the search
    sets under that group in every trial (`optimizer.momentum: interval(0.5, 0.99)`, or a fixed
    `optimizer.momentum=0.9`): Hydra would refuse the override only when the sampler drew that option, ending the
    whole search with its error. `compose` is Hydra's composition of the main config with a job's overrides."""
    for group, dist in space.distributions.items():
        if "." in group or not isinstance(dist, CategoricalDistribution):
            continue
        searched = [k for k in space.distributions if k.startswith(f"{group}.")]
        fixed = [o for o in space.fixed if o[:1] not in "+~" and override_key(o).startswith(f"{group}.")]
        if not (searched or fixed) or not (Path(config_dir()) / group).is_dir():
            continue
        keys = sorted({*searched, *map(override_key, fixed)})
        holding, missing = [], {}
        for choice in dist.choices:
            try:
                cfg = compose([*space.fixed, f"{group}={choice}"])
            except HydraException:  # a fixed override under the group that this option has no key for
                cfg = compose([o for o in space.fixed if o not in fixed] + [f"{group}={choice}"])
            lacks = [k for k in keys if OmegaConf.select(cfg, k, default=_ABSENT) is _ABSENT]
            if lacks:
                missing[str(choice)] = lacks
            else:
                holding.append(str(choice))
        if missing:
            choice, lacks = next(iter(missing.items()))
            raise ConfigError(
                group,
                f"choice({', '.join(map(str, dist.choices))})",
                f"options that all have {', '.join(keys)}"
                + (f" (here: {', '.join(holding)})" if holding else "")
                + ", or one search per option",
                problem=f"{group}={choice} has no {', '.join(lacks)}, which every trial sets: the search would "
                "end when the sampler drew it",
            )


_ABSENT = object()


ENQUEUE_KEY = "hydra.sweeper.enqueue"


def check_enqueued(enqueue: Iterable[Mapping[str, Any]], space: SearchSpace) -> None:
    """Each enqueued trial sets searched parameters to values their distributions can hold: Optuna would ignore an
    unknown key, and fail on a choice that is not one (or a log-scale value ≤ 0) only when the trial is asked. A
    number outside its range is tried as given, as Optuna does (the job's validation judges it)."""
    for i, params in enumerate(enqueue):
        for key, value in params.items():
            dist = space.distributions.get(key)
            where = f"{ENQUEUE_KEY}[{i}].{key}"
            if dist is None:
                raise ConfigError(
                    where, value, f"a searched parameter ({', '.join(space.distributions) or 'none'})"
                )
            try:
                dist.to_internal_repr(value)  # a choice it does not have, or not a number, raises
                held = not getattr(dist, "log", False) or float(value) > 0
            except (ValueError, TypeError):
                held = False
            if not held:
                raise ConfigError(where, value, f"a value its search space can hold, {dist}")


def _seeds(values: list[Any], where: str, text: str) -> list[int]:
    if not values or not all(SEED.ok(v) for v in values):
        raise ConfigError(where, text, f"one or more seeds, each {SEED.accepted}")
    return [int(v) for v in values]
