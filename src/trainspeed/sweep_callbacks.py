"""Hydra callbacks for sweeps: the exit code of a sweep in which some job failed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from trainspeed.record.run_folder import OVERRIDES_FILE
from trainspeed.record.summary import RecordError, read_summary

log = logging.getLogger("trainspeed")


def _failed(job_dir: Path) -> bool:
    try:
        summary = read_summary(job_dir)
    except RecordError as err:
        log.error("%s", err)
        return True
    return summary is None or summary.status == "failed"


def failed_jobs(sweep_dir: Path) -> list[Path]:
    """Job folders of a sweep whose record says failed, that have no record at all, or an unreadable one."""
    jobs = [p.parent.parent for p in sweep_dir.glob(f"*/{OVERRIDES_FILE}")]
    return sorted(j for j in jobs if _failed(j))


class ExitCodeOnFailure(Callback):
    """Ends a sweep with exit code 1 when any job failed (diverged runs are results, not failures).

    Hydra's own launcher would stop the sweep at the first exception; the task function records failures and
    goes on instead, so this callback is what tells a scheduler or CI that not everything succeeded.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failed = failed_jobs(Path(config.hydra.sweep.dir))
        if failed:
            log.error("%d job(s) failed: %s", len(failed), ", ".join(str(p) for p in failed))
            raise SystemExit(1)
