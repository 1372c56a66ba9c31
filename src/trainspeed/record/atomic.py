"""Atomic file writes: a reader (or a crash) never sees a half-written file. The one writer every record and
report file goes through."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path in `path`'s folder to write to; on success it replaces `path` in one rename.

    For writers that need a file name (safetensors, torch.save); `write_atomic` wraps it for text and bytes.
    The file gets the permissions of any new file (0644 under the usual umask; mkstemp alone makes 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write `data` to `path` (flushed to disk before the rename) and return `path`."""
    with replacing(path) as tmp, tmp.open("wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(path)


def write_json_atomic(path: str | Path, data: object) -> Path:
    """`data` as indented JSON, written atomically (study files, search budgets, lr_find results)."""
    return write_atomic(path, json.dumps(data, indent=2) + "\n")
