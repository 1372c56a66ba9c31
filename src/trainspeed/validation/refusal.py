"""The record of a run refused before it started.

Hydra creates the run folder (with .hydra/) before the task function runs, so a refused run leaves a folder either
way. Rather than delete what Hydra wrote, the folder is marked failed: summary.json with status "failed" and the
error, like any other failed job, so sweeps, the report and resume treat it the same way. Written without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from trainspeed.config_paths import in_sweep
from trainspeed.record.run_folder import is_placement
from trainspeed.record.summary import build_summary, write_summary
from trainspeed.run_mode import MODES


def _select(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(
            cfg, key, default=None, throw_on_resolution_failure=False, throw_on_missing=False
        )
    except Exception:  # a broken value is what got the run refused; the record must still be written
        return None


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def record_refusal(cfg: DictConfig, error: BaseException, wall_seconds: float = 0.0) -> Path | None:
    """Write summary.json (status "failed", the error) into the run folder; None outside a Hydra run."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    seed = _select(cfg, "seed")
    summary = build_summary(
        status="failed",
        time_to_target=None,
        target={"metric": _select(cfg, "target.metric"), "value": _number(_select(cfg, "target.value"))},
        metrics={},
        train_seconds=0.0,
        wall_seconds=wall_seconds,
        steps=0,
        epochs=0,
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        overrides=[o for o in hydra_cfg.overrides.task if not is_placement(o)],
        device="none",
        run_mode=mode if (mode := _select(cfg, "run_mode")) in MODES else ("sweep" if in_sweep() else "run"),
        error=f"{type(error).__name__}: {error}",
    )
    return write_summary(Path(hydra_cfg.runtime.output_dir), summary)
