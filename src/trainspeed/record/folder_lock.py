"""One trainspeed process at a time in a run or sweep folder.

The process training in a folder writes its record there: metrics.csv, checkpoints, summary.json, W&B's files. A
second process in the same folder - `resume=RUN` while the run is still alive (a scheduler requeuing a job whose
first instance has not died yet, a second terminal), a run given the same `hydra.run.dir`, a sweep re-launched into
its folder while the first launch is still running jobs - would interleave rows, replace checkpoints under the
first and leave a record that belongs to neither. So each process holds an exclusive lock on the folder it works in,
and a second one is refused before it writes anything.

The lock is `flock` on the folder itself (the standard library's fcntl; no lock library handles a directory): no
file is added to the record, and the operating system releases it when the process ends, however it ends, so a
killed run leaves no stale lock behind and resumes at once. Where `flock` does not exist (Windows) nothing is locked;
on a network file system (NFS) it keeps out the processes of the same machine only.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
from pathlib import Path

from trainspeed.errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("trainspeed")

_held: dict[Path, int] = {}  # folder -> descriptor whose lock this process holds
_created: set[Path] = set()  # folders the lock made (they did not exist yet)

IN_USE = "in use by another trainspeed process"
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "SUBMITIT_LOCAL_GLOBALID")


def secondary_rank() -> bool:
    """Whether this process is a rank other than zero of a multi-process run: the folder is rank zero's (which
    holds its lock) and the other ranks share it: started by Lightning (LOCAL_RANK, NODE_RANK), torchrun (RANK),
    SLURM (SLURM_PROCID) or submitit's local executor (SUBMITIT_LOCAL_GLOBALID)."""
    values = (os.environ.get(name, "").strip() for name in RANK_VARIABLES)
    return any(value.isdigit() and int(value) > 0 for value in values)


def lock_folder(folder: Path, key: str, accepted: str) -> bool:
    """Take the folder's lock for this process (creating the folder when it does not exist yet: Hydra would, a
    moment later). True when taken now, False when this process already holds it; ConfigError naming `key` and the
    folder when another process holds it (`accepted` says what the user can do instead)."""
    folder = Path(folder).resolve()
    if fcntl is None or folder in _held or secondary_rank():
        return False
    try:
        folder.mkdir(parents=True)
    except (FileExistsError, NotADirectoryError):
        if not folder.is_dir():  # a file of that name (or above it) is in the way
            raise ConfigError(
                key, str(folder), "a folder, or a name nothing has yet", problem="a file is in the way"
            ) from None
    else:
        _created.add(folder)
        if len(_created) == 1:
            atexit.register(_release_all)  # a process refused before it wrote anything leaves no empty folder
    descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(descriptor)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise ConfigError(key, str(folder), accepted, problem=IN_USE) from None
        log.warning("%s cannot be locked (%s): nothing keeps a second process out of it", folder, err)
        return False  # a file system without locks (some network mounts): work unlocked, as before
    _held[folder] = descriptor
    return True


def release_folder(folder: Path) -> None:
    """Give the folder's lock back (closing the descriptor releases it); a folder the lock created is removed
    again while it is empty (a sweep refused before its first job, say)."""
    folder = Path(folder).resolve()
    if folder in _created:  # removed while still locked: no other process can take an empty folder meanwhile
        _created.discard(folder)
        with contextlib.suppress(OSError):  # not empty (the run wrote into it) or already gone: kept as it is
            folder.rmdir()
    descriptor = _held.pop(folder, None)
    if descriptor is not None:
        os.close(descriptor)


def in_use(folder: Path) -> bool:
    """Whether another process holds the folder's lock now (a folder that does not exist is not in use)."""
    folder = Path(folder).resolve()
    if fcntl is None or folder in _held or not folder.is_dir():
        return False
    descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        return err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    finally:
        os.close(descriptor)  # closing releases a lock just taken
    return False


def _release_all() -> None:
    for folder in list(_held):
        release_folder(folder)
