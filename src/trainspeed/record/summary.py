"""summary.json, the run record that the report, resume, the sweep relaunch, reproduce and W&B read: one typed
definition (`Summary`) that builds, writes and reads it.

The file states its `schema_version`. A file without one was written before the field existed (version 1, the
same fields) and is read as such, as is an older version (the fields it lacks are null); a file from a newer trainspeed, a truncated file or one that is not a summary
raises a `RecordError` with one line naming the file and what is wrong.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from trainspeed.errors import TrainspeedError
from trainspeed.record.atomic import write_atomic
from trainspeed.record.environment import command_line, git_state, package_versions

SUMMARY_FILE = "summary.json"
# 2: schema_version, run_mode and compile_seconds added to version 1's; 3: stopped_by, budget_seconds; 4: inputs
SCHEMA_VERSION = 4
FINAL_METRICS = ("val/acc", "val/acc_best", "val/loss", "test/acc", "test/loss", "train/loss")

Status = Literal["completed", "diverged", "failed"]
StoppedBy = Literal["budget"]  # what stopped a run before its own stop condition: an Optuna search's budget
DONE: tuple[Status, ...] = ("completed", "diverged")  # a run that needs no more training


class RecordError(TrainspeedError):
    """A summary.json that cannot be read: the message names the file and what is wrong."""


class NewerRecordError(RecordError):
    """A summary.json of a newer schema version: readable by a newer trainspeed, so never to be rewritten here."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeToTargetRecord(_Record):
    """When the target metric was first reached; the measured fields are null when it never was."""

    metric: str | None
    target: float | None
    seconds: float | None = None
    steps: int | None = None
    epochs: float | None = None
    samples: int | None = None
    resolution_steps: int | None = None  # the validation cadence in steps: how precise `steps` is


class InputsRecord(_Record):
    """Fingerprints of what the run read (record/inputs.py); null in records written before version 4."""

    data: str | None = None  # the splits as loaded: images, labels, class names
    weights: str | None = None  # the pretrained weights file (null: trained from scratch)


class GitRecord(_Record):
    commit: str | None = None
    dirty: bool | None = None


class Summary(_Record):
    """The whole record of one run, in the order the file lists it (README shows an example).

    What a result means needs status, reached_target, time_to_target and metrics; the facts about how the run was
    made may be missing in files written by other tools (null then).
    """

    schema_version: int = SCHEMA_VERSION
    status: Status
    reached_target: bool
    time_to_target: TimeToTargetRecord
    metrics: dict[str, float | None]
    train_seconds: float | None = None
    wall_seconds: float | None = None
    compile_seconds: float | None = None  # compiling the network, excluded from train_seconds
    steps: int | None = None
    epochs: int | None = None
    seed: int | None = None
    run_mode: Literal["run", "sweep"] | None = None  # how mode-dependent defaults were resolved (run_mode.py)
    overrides: list[str] | None = None
    device: str | None = None
    inputs: InputsRecord = InputsRecord()
    versions: dict[str, str | None] = {}
    git: GitRecord = GitRecord()
    command: list[str] | None = None
    error: str | None = None
    # set when a search's pruning budget stopped the run (its trial is pruned): null for a run that stopped by its
    # own condition (target, epochs / steps, divergence), and in records written before version 3
    stopped_by: StoppedBy | None = None
    budget_seconds: float | None = None  # the budget (training seconds) it went over

    @property
    def done(self) -> bool:
        """Completed or diverged: a result, nothing left to train."""
        return self.status in DONE

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = SUMMARY_FILE) -> Summary:
        """Parse a summary; RecordError (one line naming `where`) when it cannot be read."""
        try:
            data = json.loads(text)
        except ValueError as err:
            raise RecordError(f"{where} is truncated or not JSON ({err})") from None
        if not isinstance(data, dict):
            raise RecordError(f"{where} is not a run summary (a JSON {type(data).__name__}, not an object)")
        version = data.get("schema_version", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise NewerRecordError(
                f"{where} has schema_version {version!r}; this trainspeed reads versions 1 to {SCHEMA_VERSION}"
                " (written by a newer trainspeed?)"
            )
        try:
            return cls.model_validate({**data, "schema_version": SCHEMA_VERSION})
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise RecordError(
                f"{where} is not a summary this trainspeed can read: {field}: {first['msg']}"
                f" ({err.error_count()} problem(s); schema_version {version})"
            ) from None


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else round(number, 6)


def final_metrics(
    callback_metrics: dict[str, Any], best: float | None, metric: str
) -> dict[str, float | None]:
    """The metrics the record keeps, as plain floats; the best value of the target metric is always kept."""
    metrics = {k: _number(callback_metrics[k]) for k in FINAL_METRICS if k in callback_metrics}
    if best is not None:
        metrics[f"{metric}_best"] = _number(best)
    return metrics


def build_summary(
    *,
    status: Status,
    time_to_target: dict[str, Any] | None,
    target: dict[str, Any],
    metrics: dict[str, float | None],
    train_seconds: float,
    wall_seconds: float,
    steps: int,
    epochs: int,
    seed: int | None,
    overrides: list[str],
    device: str,
    run_mode: str | None = None,
    resolution_steps: int | None = None,
    compile_seconds: float | None = None,
    error: str | None = None,
    budget_seconds: float | None = None,
    inputs: dict[str, str | None] | None = None,
) -> Summary:
    """The record of a run that ends now, with the environment it ran in; time fields are null when the target
    was not reached (the validation cadence, `resolution_steps`, is stated either way). `budget_seconds`: the
    search budget that stopped the run (then `stopped_by` is "budget"); `inputs`: the fingerprints of its data and
    weights (record/inputs.py)."""
    reached = {"resolution_steps": resolution_steps, **(time_to_target or {})}
    return Summary(
        status=status,
        reached_target=time_to_target is not None,
        time_to_target=TimeToTargetRecord(
            **{"metric": target["metric"], "target": target["value"], **reached}
        ),
        metrics=metrics,
        train_seconds=round(train_seconds, 4),
        wall_seconds=round(wall_seconds, 4),
        compile_seconds=None if compile_seconds is None else round(compile_seconds, 4),
        steps=steps,
        epochs=epochs,
        seed=seed,
        run_mode=run_mode,
        overrides=list(overrides),
        device=device,
        inputs=InputsRecord(**(inputs or {})),
        versions=package_versions(),
        git=GitRecord(**git_state()),
        command=command_line(),
        error=error,
        stopped_by=None if budget_seconds is None else "budget",
        budget_seconds=budget_seconds,
    )


def write_summary(run_dir: str | Path, summary: Summary) -> Path:
    """Write RUN_DIR/summary.json atomically (a crash never leaves half a record)."""
    return write_atomic(Path(run_dir) / SUMMARY_FILE, summary.to_json())


def read_summary(run_dir: str | Path) -> Summary | None:
    """The run's summary; None when it has none (still running, or killed). RecordError when it cannot be read."""
    path = Path(run_dir) / SUMMARY_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise RecordError(f"{path} cannot be read ({err})") from None
    return Summary.from_json(text, where=str(path))


def summary_or_none(run_dir: Path) -> Summary | None:
    """A run folder's record; None when it has none or an unreadable one."""
    try:
        return read_summary(run_dir)
    except RecordError:
        return None
