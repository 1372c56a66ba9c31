"""The errors a user can cause, each naming the config key, the value and what is accepted."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TrainspeedError(Exception):
    """An error with a message written for the user: printed alone, without a traceback."""


class ConfigError(TrainspeedError, ValueError):
    """A config value that cannot be used: names the key, the value and what is accepted."""

    def __init__(self, key: str, value: object, accepted: str, problem: str | None = None) -> None:
        self.key, self.value, self.accepted = key, value, accepted
        what = f" ({problem})" if problem else ""
        super().__init__(f"{key}={value!r} is not valid{what}; accepted: {accepted}")


class DataError(TrainspeedError):
    """Data that is missing, unreadable or inconsistent with the config."""


def closest_names(value: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The valid names closest to a mistyped one (for 'did you mean' hints)."""
    return difflib.get_close_matches(str(value), list(choices), n=n, cutoff=0.5)


def unknown_name(key: str, value: str, choices: Iterable[str]) -> ConfigError:
    """A ConfigError for a name not in `choices`, suggesting the closest valid names."""
    choices = sorted(choices)
    near = closest_names(value, choices)
    if near:
        accepted = "did you mean " + ", ".join(near) + f"? ({len(choices)} names in all)"
    elif len(choices) <= 20:
        accepted = ", ".join(choices)
    else:
        accepted = ", ".join(choices[:20]) + f", ... ({len(choices)} names in all)"
    return ConfigError(key, value, accepted, problem="unknown name")
