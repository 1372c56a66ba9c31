"""Rules for single config values: type and range, each able to say what it accepts.

OmegaConf structured configs check types but not ranges, and their messages name a dataclass rather than the
override the user typed; these rules do both in one message (`optimizer.lr=-0.1 is not valid; accepted: a number
> 0`). A group's schema is a plain dict of key -> rule (see groups.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from trainspeed.errors import ConfigError, closest_names, unknown_name


class Rule:
    """A check of one value; `accepted` is the phrase the error message ends with."""

    accepted: str = "a valid value"

    def ok(self, value: Any) -> bool:
        raise NotImplementedError

    def check(self, key: str, value: Any) -> None:
        """Raise a ConfigError naming `key`, `value` and what is accepted when the value breaks the rule."""
        if not self.ok(value):
            raise ConfigError(key, value, self.accepted)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


@dataclass(frozen=True)
class Number(Rule):
    """A number (an integer with integer=True) within optional bounds; gt/lt are strict, ge/le inclusive."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    integer: bool = False
    nullable: bool = False
    infinite: bool = False  # inf accepted (a limit that is off); NaN never is

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if not _is_number(value) or (self.integer and not isinstance(value, int)) or value != value:
            return False
        if not self.infinite and value in (math.inf, -math.inf):  # 1e400 too: YAML reads it as inf
            return False
        return not (
            (self.gt is not None and not value > self.gt)
            or (self.ge is not None and not value >= self.ge)
            or (self.lt is not None and not value < self.lt)
            or (self.le is not None and not value <= self.le)
        )

    @property
    def accepted(self) -> str:  # type: ignore[override]
        kind = "an integer" if self.integer else "a number"
        low = (
            f"({_fmt(self.gt)}"
            if self.gt is not None
            else f"[{_fmt(self.ge)}"
            if self.ge is not None
            else None
        )
        high = (
            f"{_fmt(self.lt)})"
            if self.lt is not None
            else f"{_fmt(self.le)}]"
            if self.le is not None
            else None
        )
        if low and high:
            text = f"{kind} in {low}, {high}"
        elif low:
            text = f"{kind} > {_fmt(self.gt)}" if self.gt is not None else f"{kind} ≥ {_fmt(self.ge)}"
        elif high:
            text = f"{kind} < {_fmt(self.lt)}" if self.lt is not None else f"{kind} ≤ {_fmt(self.le)}"
        else:
            text = kind
        return text + (" or null" if self.nullable else "")


def Integer(**bounds: Any) -> Number:  # noqa: N802 - reads like a type in a schema
    """An integer rule: Integer(ge=1) accepts 1, 2, ... but not 1.5, True or '1'."""
    return Number(integer=True, **bounds)


@dataclass(frozen=True)
class Exactly(Rule):
    """One literal value (such as -1 for "no limit")."""

    value: Any

    def ok(self, value: Any) -> bool:
        return value == self.value and type(value) is type(self.value)

    @property
    def accepted(self) -> str:  # type: ignore[override]
        return "null" if self.value is None else repr(self.value)


@dataclass(frozen=True)
class Flag(Rule):
    """true or false (Hydra parses true/false/True/False to booleans)."""

    nullable: bool = False

    def ok(self, value: Any) -> bool:
        return isinstance(value, bool) or (value is None and self.nullable)

    @property
    def accepted(self) -> str:  # type: ignore[override]
        return "true or false" + (" or null" if self.nullable else "")


@dataclass(frozen=True)
class Text(Rule):
    """A non-empty string."""

    nullable: bool = False

    def ok(self, value: Any) -> bool:
        return (isinstance(value, str) and value.strip() != "") or (value is None and self.nullable)

    @property
    def accepted(self) -> str:  # type: ignore[override]
        return "a non-empty string" + (" or null" if self.nullable else "")


@dataclass(frozen=True)
class Choice(Rule):
    """One of a fixed set of names; a mistyped name gets the closest valid names suggested."""

    choices: tuple[Any, ...]
    nullable: bool = False

    def ok(self, value: Any) -> bool:
        return (value is None and self.nullable) or (
            value in self.choices and type(value) in {type(c) for c in self.choices}
        )

    @property
    def accepted(self) -> str:  # type: ignore[override]
        return ", ".join(dict.fromkeys(str(c) for c in self.choices)) + (" or null" if self.nullable else "")

    def check(self, key: str, value: Any) -> None:
        if self.ok(value):
            return
        if isinstance(value, str) and all(isinstance(c, str) for c in self.choices):
            raise unknown_name(key, value, self.choices)
        raise ConfigError(key, value, self.accepted)


@dataclass(frozen=True)
class Seq(Rule):
    """A list whose items all pass `item`, of a given length (or at least min_len items)."""

    item: Rule
    length: int | None = None
    min_len: int = 1
    nullable: bool = False

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if not isinstance(value, list | tuple):
            return False
        size_ok = len(value) == self.length if self.length is not None else len(value) >= self.min_len
        return size_ok and all(self.item.ok(v) for v in value)

    @property
    def accepted(self) -> str:  # type: ignore[override]
        size = f"{self.length}" if self.length is not None else f"{self.min_len} or more"
        return f"a list of {size} values, each {self.item.accepted}" + (" (or null)" if self.nullable else "")


@dataclass(frozen=True)
class AnyOf(Rule):
    """Passes when one of the rules passes (e.g. an integer ≥ 1 or -1 for "no limit")."""

    rules: tuple[Rule, ...]
    text: str | None = None

    def ok(self, value: Any) -> bool:
        return any(rule.ok(value) for rule in self.rules)

    @property
    def accepted(self) -> str:  # type: ignore[override]
        return self.text or " or ".join(rule.accepted for rule in self.rules)


@dataclass(frozen=True)
class MappingRule(Rule):
    """A mapping (free-form keyword arguments), or null."""

    def ok(self, value: Any) -> bool:
        return value is None or isinstance(value, Mapping)

    accepted = "a mapping of names to values (or null)"


def check_schema(values: Mapping[str, Any], prefix: str, schema: Mapping[str, Rule]) -> None:
    """Check every key of `schema` that `values` holds; keys a group does not define are not required."""
    for key, rule in schema.items():
        if key in values:
            rule.check(f"{prefix}.{key}" if prefix else key, values[key])


def check_known_keys(values: Mapping[str, Any], prefix: str, known: Iterable[str]) -> None:
    """Refuse a key no setting reads (a typo, or `+group.key=` of something that does not exist): silently
    ignored, it would leave the run training with the default the user meant to change."""
    known = sorted(known)
    named = (lambda key: f"{prefix}.{key}") if prefix else str
    for key, value in values.items():
        if key not in known:
            near = closest_names(key, known, n=1)
            hint = f"did you mean {named(near[0])}? " if near else ""
            accepted = hint + "the keys " + ", ".join(named(k) for k in known)
            raise ConfigError(named(key), value, accepted, problem="unknown key")


def divisors(n: int) -> Iterable[int]:
    """The divisors of n, ascending (the group counts groupnorm accepts for n channels)."""
    return [d for d in range(1, n + 1) if n % d == 0]
