"""The search's sampler: a class of optuna.samplers by name, and its seed on every launch of a study.

A seeded sampler repeats its draws; a study continued by a relaunch (or by another process on a shared storage)
would then ask the same points again. So the seed a launch gives the sampler is the configured seed when the study
has no trial yet (a fresh study with the same seed is reproducible), and one derived from (seed, trials already in
the study) otherwise: a continued study samples new points, and the same continuation is reproducible too.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna

from trainspeed.errors import ConfigError, closest_names

NAME_KEY = "hydra.sweeper.sampler.name"
# samplers of optuna.samplers this sweeper cannot drive, and why
UNSUPPORTED = {
    "PartialFixedSampler": "it takes another sampler object, which a config cannot give",
    "GridSampler": "its grid would repeat the search space: give the grid as choice(...) / range(...) values and "
    "use BruteForceSampler",
}
KWARGS_KEY = "hydra.sweeper.sampler.kwargs"


def sampler_classes() -> dict[str, type[optuna.samplers.BaseSampler]]:
    """The samplers of optuna.samplers this sweeper can build and drive, by class name (abstract bases such as
    BaseGASampler and the UNSUPPORTED ones left out)."""
    names = sorted(n for n in dir(optuna.samplers) if n.endswith("Sampler") and n not in UNSUPPORTED)
    classes = {name: getattr(optuna.samplers, name) for name in names}
    return {name: cls for name, cls in classes.items() if not inspect.isabstract(cls)}


def required_arguments(sampler_class: type) -> list[str]:
    """The constructor arguments a sampler cannot do without (GridSampler: search_space)."""
    parameters = inspect.signature(sampler_class).parameters.values()
    return [
        p.name
        for p in parameters
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def _accepted(classes: Mapping[str, type]) -> str:
    plain = [name for name, cls in classes.items() if not required_arguments(cls)]
    needing = [
        f"{name} with {', '.join(f'{KWARGS_KEY}.{a}' for a in required_arguments(cls))}"
        for name, cls in classes.items()
        if required_arguments(cls)
    ]
    return ", ".join(plain) + (f"; or {'; '.join(needing)}" if needing else "")


def check_sampler(name: str, kwargs: Mapping[str, Any]) -> type[optuna.samplers.BaseSampler]:
    """The sampler class for `name`; a ConfigError for an unknown name or a sampler missing required arguments."""
    classes = sampler_classes()
    if name in UNSUPPORTED:
        raise ConfigError(NAME_KEY, name, _accepted(classes), problem=UNSUPPORTED[name])
    if name not in classes:
        near = closest_names(name, classes)
        hint = f"did you mean {', '.join(near)}? " if near else ""
        raise ConfigError(
            NAME_KEY, name, hint + _accepted(classes), problem="not a sampler of optuna.samplers"
        )
    missing = [a for a in required_arguments(classes[name]) if a not in kwargs]
    if missing:
        needs = ", ".join(f"{KWARGS_KEY}.{a}" for a in missing)
        raise ConfigError(NAME_KEY, name, _accepted(classes), problem=f"it needs {needs}")
    return classes[name]


def check_sampler_space(name: str, distributions: Mapping[str, Any]) -> None:
    """BruteForceSampler enumerates the space: every searched key needs finitely many values."""
    from optuna.distributions import FloatDistribution

    if name != "BruteForceSampler":
        return
    for key, dist in distributions.items():
        if isinstance(dist, FloatDistribution) and dist.step is None:
            raise ConfigError(
                NAME_KEY, name, "a sampler for continuous values (TPESampler, RandomSampler, ...)",
                problem=f"{key} is a continuous interval, which it cannot enumerate; or search {key} with choice(...)",
            )  # fmt: skip


def sampler_seed(seed: int | None, trials_so_far: int) -> int | None:
    """The configured seed for a study without trials, else a seed derived from (seed, trials so far)."""
    if seed is None or trials_so_far == 0:
        return seed
    return int(np.random.SeedSequence([seed, trials_so_far]).generate_state(1)[0])


def make_sampler(name: str, seed: int | None, kwargs: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    """The sampler `name` (checked with check_sampler) built with `seed` and `kwargs`; arguments it refuses give
    a ConfigError naming hydra.sweeper.sampler.kwargs."""
    sampler_class = check_sampler(name, kwargs)
    try:
        return sampler_class(**({"seed": seed} if seed is not None else {}), **kwargs)
    except (TypeError, ValueError) as err:
        problem = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(
            KWARGS_KEY, dict(kwargs), f"keyword arguments of optuna.samplers.{name}", problem=problem
        ) from None
