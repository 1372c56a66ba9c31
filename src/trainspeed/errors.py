"""The errors a user can cause, each naming the config key, the value and what is accepted."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TrainspeedError(Exception):
    """An error with a message written for the user: printed alone, without a traceback."""


class ConfigError(TrainspeedError, ValueError):
    """A config value that cannot be used: names the key, the value and what is accepted."""

    def __init__(self, key: str, value: object, accepted: str, problem: str | None = None) -> None:
        self.key, self.value, self.accepted, self.problem = key, value, accepted, problem
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


class ResourceError(TrainspeedError):
    """The run needs more of the device than it has (memory): the message says which settings lower the need."""


# a torch.cuda.OutOfMemoryError, or the allocator's message on the CPU / MPS (matched by text: no torch import)
_OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory")


def out_of_memory(err: BaseException, batch_size: object, precision: object) -> ResourceError | None:
    """A ResourceError suggesting a smaller batch or a lower precision when `err` is an out-of-memory error."""
    text = str(err)
    if type(err).__name__ != "OutOfMemoryError" and not any(m in text.lower() for m in _OOM_MARKERS):
        return None
    try:
        smaller = f"data.batch_size={max(int(batch_size) // 2, 1)}"  # type: ignore[call-overload]
    except (TypeError, ValueError):
        smaller = "a smaller data.batch_size"
    first_line = text.strip().splitlines()[0][:200] if text.strip() else type(err).__name__
    return ResourceError(
        f"out of memory with data.batch_size={batch_size} and trainer.precision={precision} ({first_line}). "
        f"Try {smaller}, trainer.precision=bf16-mixed (16-mixed on GPUs without bf16), "
        "or trainer.accumulate_grad_batches=2 with half the batch size to keep the effective batch."
    )


def lightning_misconfiguration(err: BaseException) -> BaseException | None:
    """Lightning's MisconfigurationException, raised directly or wrapped by Hydra's InstantiationException while
    building a callback or logger; recognised by name so that this module stays free of heavy imports."""
    seen: BaseException | None = err
    while seen is not None:
        if any(cls.__name__ == "MisconfigurationException" for cls in type(seen).__mro__):
            return seen
        if type(seen).__name__ != "InstantiationException":
            return None
        seen = seen.__cause__
    return None


def is_user_error(err: BaseException) -> bool:
    """Errors whose message is the whole story (printed without a traceback): trainspeed's own, and Lightning's
    refusals (e.g. trainer=gpu on a machine without one, a callback argument out of its range)."""
    return isinstance(err, TrainspeedError) or lightning_misconfiguration(err) is not None
