"""Checkpointing that does not count as training time."""

from __future__ import annotations

from pytorch_lightning.callbacks import ModelCheckpoint

from trainspeed.record.atomic import replacing


class UntimedCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, written between groups of training steps, where the training clock does not
    run (so saves are never charged to the technique being measured). The loggers are flushed with every
    checkpoint, so a run resumed from it finds every metric logged before it on disk. The file is replaced
    atomically.
    """

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        for logger in trainer.loggers:
            logger.save()
        if not trainer.is_global_zero:  # rank zero writes the file; the others only join the save's barrier
            super()._save_checkpoint(trainer, filepath)
            return
        # written under a temporary name, then renamed: a run killed while saving keeps its previous checkpoint
        # whole (Lightning writes the file in place), so it can still be resumed
        with replacing(filepath) as partial:
            super()._save_checkpoint(trainer, str(partial))
        self._last_checkpoint_saved = filepath
