"""A resumed run's folder as it was before the resume, put back when the resume fails without training.

`resume=RUN_DIR` writes into the run's own folder: Hydra rewrites `.hydra/` before the job starts, and a job that
fails writes a failed `summary.json`. When the failure comes before any training (missing data, a weights file
that cannot be read), the run is exactly where it was, so its record must be too: the snapshot holds every file
outside `checkpoints/` (the record: summary, metrics, logs, `.hydra/`, W&B's offline files), and is restored
byte-for-byte unless `checkpoints/last.ckpt` changed, which means training went on and the new record is the
true one. Checkpoints are never rewritten or deleted by the restore.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from trainspeed.record.run_folder import LAST_CHECKPOINT

CHECKPOINTS = LAST_CHECKPOINT.parent
MAX_BYTES = 256 * 2**20  # a record larger than this is not held in memory (the folder is then not restored)


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


class FolderSnapshot:
    """The record files of a run folder (everything outside checkpoints/) and its last checkpoint's signature."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.last_checkpoint = _signature(run_dir / LAST_CHECKPOINT)
        self.files: dict[Path, bytes] = {}
        self.links: dict[Path, str] = {}  # W&B links debug.log and latest-run to its newest run
        self.complete = True
        total = 0
        for path in sorted(run_dir.rglob("*")):
            relative = path.relative_to(run_dir)
            if relative.parts[:1] == CHECKPOINTS.parts:
                continue
            if path.is_symlink():
                self.links[relative] = os.readlink(path)
                continue
            if not path.is_file():
                continue
            total += path.stat().st_size
            if total > MAX_BYTES:
                self.complete, self.files = False, {}
                return
            self.files[relative] = path.read_bytes()

    def trained(self) -> bool:
        """Whether training went on since the snapshot: the last checkpoint was written (or first appeared)."""
        return _signature(self.run_dir / LAST_CHECKPOINT) != self.last_checkpoint

    def restore(self) -> bool:
        """Put the record back as it was: changed files rewritten, new files and folders outside checkpoints/
        removed. False when the snapshot could not hold the record (nothing is touched then)."""
        if not self.complete:
            return False
        kept = {*self.files, *self.links}
        for path in sorted(self.run_dir.rglob("*"), reverse=True):  # files before the folders holding them
            relative = path.relative_to(self.run_dir)
            if relative.parts[:1] == CHECKPOINTS.parts or relative in self.files:
                continue
            if relative in self.links and path.is_symlink() and os.readlink(path) == self.links[relative]:
                continue
            if path.is_dir() and not path.is_symlink():
                if not any(p.parts[: len(relative.parts)] == relative.parts for p in kept):
                    shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        for relative, data in self.files.items():
            path = self.run_dir / relative
            if path.is_symlink() or not path.is_file() or path.read_bytes() != data:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.unlink(missing_ok=True)
                path.write_bytes(data)
        for relative, target in self.links.items():
            path = self.run_dir / relative
            if not path.is_symlink():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.symlink_to(target)
        return True
