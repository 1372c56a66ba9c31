"""Resuming: a killed run continues in its own folder, a re-launched sweep skips what is done.

- `python -m trainspeed.train resume=RUN_DIR` re-launches the run with the overrides saved in RUN_DIR (plus any
  given next to `resume=`) into RUN_DIR itself, from checkpoints/last.ckpt.
- A sweep re-launched into the same folder (`hydra.sweep.dir=SWEEP_DIR`) skips jobs whose summary.json says
  completed or diverged, resumes jobs that left a checkpoint and reruns the others.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from trainspeed.errors import ConfigError
from trainspeed.record.summary import read_summary

log = logging.getLogger("trainspeed")

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
DONE = ("completed", "diverged")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def resume_arguments(argv: list[str]) -> list[str]:
    """Command-line arguments with `resume=RUN_DIR` expanded into that run's saved overrides and its folder.

    Arguments given beside `resume=` win over the saved ones (e.g. a longer trainer.max_epochs).
    """
    resume = [a for a in argv if _key(a) == "resume" and a.split("=", 1)[1] not in ("", "null")]
    if not resume:
        return argv
    run_dir = Path(resume[-1].split("=", 1)[1]).expanduser().resolve()
    saved_path = run_dir / ".hydra" / "overrides.yaml"
    if not saved_path.is_file():
        raise ConfigError(
            "resume", str(run_dir), "a run folder holding .hydra/overrides.yaml", problem="not a run"
        )
    given = [a for a in argv if _key(a) != "resume"]
    given_keys = {_key(a) for a in given if "=" in a}
    saved = [o for o in (yaml.safe_load(saved_path.read_text()) or []) if _key(o) not in given_keys]
    saved = [o for o in saved if _key(o) != "resume" and not _key(o).startswith("hydra.")]
    return [*saved, *given, f"hydra.run.dir={run_dir}", f"resume={run_dir}"]


def checkpoint_to_resume(run_dir: Path, resume: str | None, ckpt_path: str | None) -> str | None:
    """The checkpoint fit() should start from: last.ckpt of a resumed run, or an explicit ckpt_path
    (Lightning's "last" is this run folder's checkpoints/last.ckpt when there is one)."""
    if ckpt_path == "last" and (run_dir / LAST_CHECKPOINT).is_file():
        return str(run_dir / LAST_CHECKPOINT)
    if ckpt_path:
        return ckpt_path
    if not resume:
        return None
    last = run_dir / LAST_CHECKPOINT
    if last.is_file():
        return str(last)
    log.warning("resume: %s has no checkpoint yet; starting the run from the beginning", run_dir)
    return None


def checkpoint_step(checkpoint: str | None) -> int | None:
    """The global step a checkpoint file was saved at (None without a file, e.g. ckpt_path="last")."""
    if not checkpoint or not Path(checkpoint).is_file():
        return None
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return int(state.get("global_step", 0))


def sweep_job_plan(run_dir: Path, overrides: list[str]) -> tuple[str, dict | None]:
    """For a sweep job folder that may hold an earlier attempt: ("skip", summary), ("resume", None) or ("run", None).

    A job is only skipped when its record was made with the same overrides (Hydra numbers jobs by position, so a
    changed sweep would put other settings under the same number).
    """
    summary = read_summary(run_dir)
    if summary and summary.get("status") in DONE and summary.get("overrides") == list(overrides):
        return "skip", summary
    if (run_dir / LAST_CHECKPOINT).is_file() and (
        not summary or summary.get("overrides") in (None, list(overrides))
    ):
        return "resume", None
    return "run", None
