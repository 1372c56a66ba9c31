"""Checkpointing that does not count as training time."""

from __future__ import annotations

import os
from typing import Any

from pytorch_lightning.callbacks import ModelCheckpoint

from trainspeed.record.atomic import replacing

_PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


class UntimedCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, written between groups of training steps, where the training clock does not
    run (so saves are never charged to the technique being measured). The loggers are flushed with every
    checkpoint, so a run resumed from it finds every metric logged before it on disk. The file is replaced
    atomically.

    A checkpoint due at a step that also validates is written after that validation, not before it: Lightning
    resumes a checkpoint written at the end of a training batch *past* the validation that was about to run, so a
    run killed after it would never validate that step (the time to target, best.ckpt and metrics.csv would
    differ from the run that was never stopped). Written after it (where Lightning writes its own checkpoints after a
    validation: at its end, or at the epoch's end), the checkpoint holds the validation's result. Such checkpoints
    come after the trainer's other checkpoint callbacks (trainer_factory), so they hold their bookkeeping too.

    A run folder's checkpoints keep their names (best.ckpt, last.ckpt): a resumed run overwrites them rather than
    writing best-v1.ckpt / last-v1.ckpt beside them, which would leave the last.ckpt that resume= reads stale. A
    run folder that was copied or moved keeps its best-model bookkeeping (see load_state_dict).
    """

    def __init__(self, *args: Any, enable_version_counter: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, enable_version_counter=enable_version_counter, **kwargs)
        self._save_after_validation = False
        self.stopped_at: int | None = None  # the step of a last checkpoint written where training stopped

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        due = self._every_n_train_steps >= 1 and trainer.global_step % self._every_n_train_steps == 0
        stops = self._stops_inside_epoch(trainer)
        if (due or stops) and not self._should_skip_saving_checkpoint(trainer) and _validates_now(trainer):
            self._save_after_validation = True
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if stops and not self._save_after_validation:
            self._save_at_stop(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):  # where Lightning saves after a validation
            self._save_deferred(trainer)
        if trainer.should_stop and self._stops_inside_epoch(trainer):  # the target stopped it (target.stop)
            self._save_at_stop(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.stopped_at == trainer.global_step:  # the epoch did not end: training stopped inside it
            return
        super().on_train_epoch_end(trainer, pl_module)
        # a validation at the epoch's end: saved after the epoch-end hooks, where Lightning saves its own
        self._save_deferred(trainer)

    def _stops_inside_epoch(self, trainer) -> bool:
        """Whether training stops after this step, inside its epoch (trainer.max_steps, or the target). Lightning
        then runs the epoch's end all the same and counts the epoch done: a checkpoint written after that, resumed
        to train longer, would start the next epoch (its labels, shuffling and validation cadence one epoch
        ahead of the run that was never stopped). The last checkpoint is written at the step instead."""
        if not self.save_last or trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return False
        return trainer.should_stop or 0 < trainer.max_steps <= trainer.global_step

    def _save_at_stop(self, trainer) -> None:
        if self.stopped_at != trainer.global_step and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self.stopped_at = trainer.global_step

    def _save_deferred(self, trainer) -> None:
        if not self._save_after_validation:
            return
        self._save_after_validation = False
        if not self._should_skip_saving_checkpoint(trainer):  # unless this validation's save has written it
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)
        if self._stops_inside_epoch(trainer):
            self.stopped_at = trainer.global_step

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Lightning drops the best score and the best / last paths when the checkpoint folder has another path
        than when it was saved, so the next validation would replace best.ckpt whatever its score. A run folder
        copied or moved with its checkpoints has them all here under the same names: its saved paths are moved
        to this folder, and the bookkeeping continues as if the folder had never moved."""
        saved_dir = state_dict.get("dirpath")
        if saved_dir and self.dirpath and saved_dir != self.dirpath:
            state_dict = self._moved_here(state_dict, saved_dir) or state_dict
        super().load_state_dict(state_dict)

    def _moved_here(self, state_dict: dict[str, Any], saved_dir: str) -> dict[str, Any] | None:
        """state_dict with its paths in this folder; None unless every file it names is here (then they are
        another run folder's checkpoints, and Lightning's own rule applies)."""
        best_k = state_dict.get("best_k_models") or {}
        named = [*best_k, *(state_dict.get(key) for key in _PATH_KEYS)]
        moved = {path: self._here(saved_dir, path) for path in named if path}
        if None in moved.values():
            return None
        return {
            **state_dict,
            "dirpath": self.dirpath,
            "best_k_models": {moved[path]: score for path, score in best_k.items()},
            **{key: moved.get(state_dict[key], state_dict[key]) for key in _PATH_KEYS if key in state_dict},
        }

    def _here(self, saved_dir: str, path: str) -> str | None:
        """A file of saved_dir under the same name in this callback's folder, when it is there."""
        if os.path.dirname(path) != saved_dir:
            return None
        here = os.path.join(self.dirpath, os.path.basename(path))
        return here if os.path.isfile(here) else None

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


def _validates_now(trainer) -> bool:
    """Whether the training loop validates right after the batch that just ended (Lightning's own check, or the
    stepped loop's, asked early: it reads only the loop's progress, which the rest of the iteration leaves as is)."""
    loop = trainer.fit_loop
    return bool(loop.epoch_loop._should_check_val_fx(loop._data_fetcher))
