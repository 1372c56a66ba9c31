"""Experiment tracking: Weights & Biases runs named, configured and finished by trainspeed's conventions
(wandb_logger.WandbRunLogger, the `logger.wandb` entry of conf/logger/)."""
