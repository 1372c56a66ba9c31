"""Resuming: a killed run continues in its own folder, a re-launched sweep skips what is done.

- `python -m trainspeed.train resume=RUN_DIR` re-launches the run with the overrides saved in RUN_DIR (plus any
  given next to `resume=`) into RUN_DIR itself, from checkpoints/last.ckpt, in the run mode it was made in (a
  sweep job resumes as a sweep job: same stop rule, same validation cadence). A run that already finished is left
  untouched unless the given overrides let it train further (e.g. a larger trainer.max_epochs).
- A sweep re-launched into the same folder (`hydra.sweep.dir=SWEEP_DIR`) skips jobs whose summary.json says
  completed or diverged, resumes jobs that left a checkpoint and reruns the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainspeed.errors import ConfigError, DataError
from trainspeed.record.checkpoint_file import RUNNING_STATE_KEY, start_checkpoint
from trainspeed.record.run_folder import (
    LAST_CHECKPOINT,
    OVERRIDES_FILE,
    is_placement,
    launched_as_sweep_job,
    launched_run_mode,
    override_key,
    override_value,
    training_overrides,
)
from trainspeed.record.summary import NewerRecordError, RecordError, Summary, read_summary

log = logging.getLogger("trainspeed")


def recorded_run_mode(run_dir: Path, summary: Summary | None = None) -> str:
    """The run mode a run folder was made in: from its summary.json, else the run_mode= it was launched with (saved
    in its .hydra/config.yaml), else from Hydra's record of the launch (a run killed before its summary was written
    has only the last two)."""
    from trainspeed.run_mode import MODES

    if summary is not None and summary.run_mode is not None:
        return summary.run_mode
    if (given := launched_run_mode(run_dir)) in MODES:
        return given
    return "sweep" if launched_as_sweep_job(run_dir) else "run"


def relaunch_overrides(run_dir: Path, summary: Summary | None = None, key: str = "resume") -> list[str]:
    """The overrides that re-create the run as one job: its run mode first (so that a saved or given run_mode=
    wins), its training overrides, and hydra.mode=RUN (an experiment preset would otherwise start a sweep)."""
    saved = training_overrides(run_dir)
    if saved is None:
        raise ConfigError(key, str(run_dir), f"a run folder holding {OVERRIDES_FILE}", problem="not a run")
    return [f"run_mode={recorded_run_mode(run_dir, summary)}", *saved, "hydra.mode=RUN"]


def _summary_or_none(run_dir: Path) -> Summary | None:
    try:
        return read_summary(run_dir)
    except (
        NewerRecordError
    ) as err:  # rewritten in this version's format, it would lose what the newer one wrote
        raise ConfigError(
            "resume",
            str(run_dir),
            "a run this trainspeed can read (resume it with the newer one)",
            problem=str(err),
        ) from None
    except RecordError as err:
        if str(err) not in _WARNED:  # read by several steps of one resume: said once
            _WARNED.add(str(err))
            log.warning("%s; it will be rewritten when the run ends", err)
        return None


_WARNED: set[str] = set()


def resumed_folder(argv: list[str]) -> Path | None:
    """The run folder `resume=RUN_DIR` names (None without resume=)."""
    resume = [a for a in argv if override_key(a) == "resume" and override_value(a) not in ("", "null")]
    return Path(override_value(resume[-1])).expanduser().resolve() if resume else None


def resume_arguments(argv: list[str]) -> list[str]:
    """Command-line arguments with `resume=RUN_DIR` expanded into that run's saved overrides and its folder.

    Arguments given beside `resume=` win over the saved ones (e.g. a longer trainer.max_epochs).
    """
    run_dir = resumed_folder(argv)
    if run_dir is None:
        return argv
    given = [a for a in argv if override_key(a) != "resume"]
    given_keys = {override_key(a) for a in given if "=" in a}
    saved = relaunch_overrides(run_dir, _summary_or_none(run_dir))
    saved = [o for o in saved if override_key(o) not in given_keys]
    return [*saved, *given, f"hydra.run.dir={run_dir}", f"resume={run_dir}"]


def already_finished(argv: list[str]) -> str | None:
    """For `resume=RUN_DIR` (expanded by resume_arguments): why the run would not train any further under the
    given overrides, when its record says it finished; None when there is something to do.

    Decided before Hydra starts, because Hydra rewrites the run's .hydra/ files as soon as it runs a job: a
    finished run is left byte-for-byte as it was. For the same reason the resumed config is validated here
    first: a refused override (ConfigError) leaves the folder untouched instead of saved in its .hydra/.
    """
    run_dir = resumed_folder(argv)
    if run_dir is None:
        return None
    from hydra.core.global_hydra import GlobalHydra

    from trainspeed.config_paths import compose_run_config
    from trainspeed.run_mode import resolve_run_mode, stop_reason
    from trainspeed.validation import validate

    try:
        cfg = compose_run_config([a for a in argv if not override_key(a).startswith("hydra.")], run_dir)
    except Exception:  # noqa: BLE001 - an override Hydra cannot compose: Hydra reports it before writing
        return None
    finally:
        GlobalHydra.instance().clear()
    validate(cfg)
    resolve_run_mode(cfg)
    summary = _summary_or_none(run_dir)
    if summary is None or not summary.done:
        return None
    if summary.status == "diverged":
        return f"{run_dir} already finished: it diverged ({summary.error})"
    reason = stop_reason(cfg, summary.steps or 0, summary.epochs or 0, summary.reached_target)
    if reason is None:
        return None
    return (
        f"{run_dir} already finished ({summary.status} at step {summary.steps}): {reason}; nothing was changed. "
        "To train it longer, resume it with a larger trainer.max_epochs or trainer.max_steps."
    )


@dataclass(frozen=True)
class CheckpointState:
    """Where a checkpoint left the run: optimizer steps, completed epochs, and whether the target was reached."""

    step: int
    epoch: int
    reached_target: bool
    logged: dict[str, float] | None = None  # the metrics last logged before it (None: written without them)
    shapes: dict[str, tuple[int, ...]] | None = None  # the module's tensors, by name
    inputs: dict[str, str | None] | None = None  # fingerprints of the data and weights (None: not kept)


def check_same_inputs(state: CheckpointState, inputs: dict[str, str | None], key: str, value: str) -> None:
    """Refuse to continue a run on other data or other pretrained weights than its checkpoint was trained on (a
    file under data.root changed, $TRAINSPEED_DATA names another folder, the weights were saved again): its record
    would mix two runs. A checkpoint given as ckpt_path= (a deliberate start from another run) is only warned
    about."""
    from trainspeed.record.inputs import input_changes

    changes = input_changes(state.inputs or {}, inputs)
    if not changes:
        return
    problem = "it was trained on other inputs than this config reads: " + "; ".join(changes)
    if key == "ckpt_path":
        log.warning("ckpt_path=%s: %s", value, problem)
        return
    raise ConfigError(
        key,
        value,
        "a run resumed on the data and weights it was started with (to train on these, start a new run)",
        problem=problem,
    )


def check_checkpoint_fits(state: CheckpointState, module: Any, key: str, value: str) -> None:
    """Refuse a checkpoint whose network is not the one this config builds (resume= with another model.width,
    ckpt_path= of another model), in one line naming the first tensor that differs, before fit() meets it."""
    if state.shapes is None:
        return
    built = {name: tuple(tensor.shape) for name, tensor in module.state_dict().items()}
    differ = sorted(n for n in built.keys() | state.shapes.keys() if built.get(n) != state.shapes.get(n))
    if differ:
        first = differ[0]
        there, here = state.shapes.get(first, "absent"), built.get(first, "absent")
        raise ConfigError(
            key,
            value,
            "a checkpoint of the network this config builds (resume with the overrides the run was made with)",
            problem=f"its network is not this config's: {first} is {there} there, {here} here "
            f"({len(differ)} tensor(s) differ)",
        )


def checkpoint_to_resume(run_dir: Path, resume: str | None, ckpt_path: str | None) -> str | None:
    """The checkpoint fit() should start from: last.ckpt of a resumed run, or an explicit ckpt_path
    (Lightning's "last" is this run folder's checkpoints/last.ckpt when there is one). A missing or unreadable
    file is a ConfigError naming the setting and the file (record/checkpoint_file.py)."""
    checkpoint = start_checkpoint(run_dir, resume, ckpt_path)
    if resume and checkpoint is None:
        log.warning("resume: %s has no checkpoint yet; starting the run from the beginning", run_dir)
    return checkpoint


def checkpoint_state(checkpoint: str | None) -> CheckpointState | None:
    """The state a checkpoint file was saved in (None without a file, e.g. ckpt_path="last"); a file torch cannot
    read is a DataError naming it."""
    if not checkpoint or not Path(checkpoint).is_file():
        return None
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - whatever torch meets in a damaged file, the user needs its name
        raise DataError(
            f"checkpoint {checkpoint} is unreadable or corrupt ({type(err).__name__}: {err}); replace it with an "
            "intact copy, or move it away to start without it"
        ) from err
    if not isinstance(state, dict) or "state_dict" not in state:
        raise DataError(f"{checkpoint} is not a Lightning checkpoint (no state_dict in it)")
    callbacks = state.get("callbacks") or {}
    target = next((v for k, v in callbacks.items() if "TimeToTarget" in str(k)), None) or {}
    return CheckpointState(
        step=int(state.get("global_step", 0)),
        epoch=int(state.get("epoch", 0)),
        reached_target=target.get("result") is not None,
        logged=(state.get(RUNNING_STATE_KEY) or {}).get("logged"),
        shapes={name: tuple(t.shape) for name, t in state["state_dict"].items() if hasattr(t, "shape")},
        inputs=(state.get(RUNNING_STATE_KEY) or {}).get("inputs"),
    )


def sweep_job_plan(run_dir: Path, overrides: list[str]) -> tuple[str, Summary | None]:
    """For a sweep job folder that may hold an earlier attempt: ("skip", summary), ("resume", None) or ("run", None).

    A job is only skipped when its record was made with the same overrides (Hydra numbers jobs by position, so a
    changed sweep would put other settings under the same number).
    """
    summary = _summary_or_none(run_dir)
    overrides = [o for o in overrides if not is_placement(o)]  # the record keeps only these
    if summary is not None and summary.done and summary.overrides == overrides:
        return "skip", summary
    if (run_dir / LAST_CHECKPOINT).is_file() and (summary is None or summary.overrides in (None, overrides)):
        return "resume", None
    return "run", None
