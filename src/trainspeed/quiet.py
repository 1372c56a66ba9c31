"""Silence library chatter that says nothing about the user's run, so real warnings stand out."""

from __future__ import annotations

import logging
import warnings

# (category, message regex) of warnings that are expected in how trainspeed uses its libraries
_EXPECTED_WARNINGS = (
    # Hydra writes .hydra/ and the job log into the run folder before the CSV logger opens it
    r".*Experiment logs directory .* exists and is not empty.*",
    # index-batched tensors are not a torch DataLoader: there are no workers to tune
    r".*does not have many workers.*",
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*The number of training batches \(\d+\) is smaller than the logging interval.*",
    # DDP: validation and test metrics are torchmetrics values, already reduced over the processes by compute();
    # the training clock is rank zero's by design (rank zero logs). sync_dist=True would only add all-reduces.
    r"It is recommended to use `self.log\('(val/loss|val/acc|val/acc_best|test/loss|test/acc|time/train_seconds"
    r"|time/samples)', \.\.\., sync_dist=True\)`.*",
    # checkpoints hold the state after the step they are named by, which is what a resumed run needs
    r".*Using ModelCheckpoint with manual optimization and every_n_train_steps.*",
    # best.ckpt before the first validation (the target metric is validated by name; a run that never validates
    # gets trainspeed's own warning, callbacks/time_to_target.py)
    r".*ModelCheckpoint\(monitor=.*could not find the monitored key.*",
    # the training step steps schedulers itself, reading a plateau scheduler's monitored metric
    r".*The lr scheduler dict contains the key\(s\) \['monitor', 'strict'\].*",
)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


def quiet_library_noise() -> None:
    """Filter the known-harmless warnings and the advertising tips of Lightning."""
    for pattern in _EXPECTED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_DropTips())
