"""`python -m trainspeed.train [overrides]` (add -m for a sweep): train one configuration per job."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from trainspeed.config_paths import CONFIG_NAME, config_dir
from trainspeed.job import run_job


@hydra.main(version_base="1.3", config_path=config_dir(), config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> float | None:
    """Hydra's task function; returns the time-to-target seconds (for search sweepers), None when unreached."""
    summary = run_job(cfg)
    return summary["time_to_target"]["seconds"]


if __name__ == "__main__":
    main()
