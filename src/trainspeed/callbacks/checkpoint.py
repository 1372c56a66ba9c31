"""Checkpointing that does not count as training time."""

from __future__ import annotations

from pytorch_lightning.callbacks import ModelCheckpoint

from trainspeed.callbacks.train_clock import find_clock


class UntimedCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint with the training clock paused while a checkpoint is written.

    Saves triggered from inside the training loop (every_n_train_steps) would otherwise be charged to the technique
    being measured; the clock resumes with the next training batch. The loggers are flushed with every checkpoint,
    so a run resumed from it finds every metric logged before it on disk.
    """

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        clock = find_clock(trainer)
        if clock is not None:
            clock.pause(trainer)
        for logger in trainer.loggers:
            logger.save()
        super()._save_checkpoint(trainer, filepath)
