"""`python -m trainspeed.train [overrides]` (add -m for a sweep): train one configuration per job."""

from __future__ import annotations

import logging
import os

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from trainspeed.config_paths import CONFIG_NAME, config_dir
from trainspeed.errors import TrainspeedError
from trainspeed.job import run_job
from trainspeed.quiet import quiet_library_noise

log = logging.getLogger("trainspeed")


def _in_sweep() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=config_dir(), config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> float | None:
    """Hydra's task function; returns the time-to-target seconds (for search sweepers), None when unreached.

    In a sweep a failing job is recorded (summary.json, status "failed") and the sweep goes on; the sweep's exit
    code says that something failed (see trainspeed.sweep_callbacks). A single run re-raises, so it exits non-zero.
    """
    quiet_library_noise()
    try:
        summary = run_job(cfg)
    except Exception as err:
        user_error = isinstance(err, TrainspeedError) and not os.environ.get("HYDRA_FULL_ERROR")
        if not _in_sweep():
            if not user_error:
                raise
            log.error("%s", err)
            raise SystemExit(2) from None
        if user_error:
            log.error("job failed: %s", err)
        else:
            log.exception("job failed; the sweep goes on")
        return None
    return summary["time_to_target"]["seconds"]


if __name__ == "__main__":
    main()
