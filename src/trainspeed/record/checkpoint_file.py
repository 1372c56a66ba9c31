"""The checkpoint a run starts from (`resume=` or `ckpt_path=`), chosen and checked without torch.

torch.save (and so Lightning) writes a zip archive holding `<name>/data.pkl`; a file cut short loses the zip's
central directory at its end, a wrong or empty file has none; a damaged byte (disk, copy) no longer matches the
CRC-32 the archive holds for its member, which torch.load does not check: it would load the damaged values. Such a
file is refused in one line naming the setting and the file, before anything is built, instead of torch's error from
inside fit() or a resume from values that were never saved.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from trainspeed.errors import ConfigError
from trainspeed.record.run_folder import LAST_CHECKPOINT, override_key, override_value

# where a checkpoint keeps the module's running state: the training window it cut, the best validation so far and
# the metrics logged last (training/classifier.py writes it, resume.checkpoint_state reads the metrics)
RUNNING_STATE_KEY = "trainspeed_running_state"

CKPT_PATH_ACCEPTED = (
    "a checkpoint file written by trainspeed or Lightning (.ckpt), last (this run folder's checkpoints/last.ckpt) "
    "or null"
)


def checkpoint_problem(path: Path) -> str | None:
    """Why `path` cannot be a checkpoint to start from, or None when it reads as one."""
    if not path.exists():
        return "no such file"
    if not path.is_file():
        return "not a file"
    size = path.stat().st_size
    if size == 0:
        return "an empty file"
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        return f"not a checkpoint, or one cut short ({size} bytes: {err})"
    with archive:
        names = archive.namelist()
        if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
            return "a zip archive, but not one written by torch.save (no data.pkl)"
        return _damage(archive)


def zip_damage(path: Path) -> str | None:
    """For a file torch.save wrote (a zip archive): why its bytes are not those saved, or None when every member
    matches its checksum. Other files (safetensors, legacy torch files) have no checksum to check: None."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return None
    with archive:
        return _damage(archive)


def _damage(archive: zipfile.ZipFile) -> str | None:
    try:
        damaged = archive.testzip()  # reads every member once: about as long as torch.load reading the file
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f"damaged ({err})"
    if damaged is not None:
        return f"damaged: {damaged} does not match the checksum it was saved with"
    return None


def _require(path: Path, key: str, value: str, accepted: str) -> str:
    problem = checkpoint_problem(path)
    if problem is not None:
        where = "" if str(path) == value else f"{path}: "
        raise ConfigError(key, value, accepted, problem=where + problem)
    return str(path)


def start_checkpoint(run_dir: Path, resume: str | None, ckpt_path: str | None) -> str | None:
    """The checkpoint fit() starts from: an explicit ckpt_path (Lightning's "last" is run_dir's last.ckpt when
    there is one, else left to Lightning), or the last.ckpt of a resumed run; None to start from the beginning.

    A chosen file that is missing or does not read as a checkpoint is a ConfigError naming the setting and the file.
    """
    last = run_dir / LAST_CHECKPOINT
    if ckpt_path == "last":
        return _require(last, "ckpt_path", "last", CKPT_PATH_ACCEPTED) if last.exists() else "last"
    if ckpt_path:
        return _require(Path(ckpt_path), "ckpt_path", ckpt_path, CKPT_PATH_ACCEPTED)
    if not resume:
        return None
    if not last.exists():
        _check_nothing_trained(run_dir, resume)  # a run killed before its first checkpoint starts again
        return None
    remedy = (
        f"a run folder whose {LAST_CHECKPOINT} reads as a checkpoint: move {last} away to restart the run from its "
        "beginning in this folder, or put an intact copy there"
    )
    return _require(last, "resume", resume, remedy)


def _check_nothing_trained(run_dir: Path, resume: str) -> None:
    """Refuse to resume from step 0 a run whose record says it trained: it would train again over that record
    (its summary.json, metrics.csv and best.ckpt replaced) because its last.ckpt was removed."""
    from trainspeed.record.summary import summary_or_none

    summary = summary_or_none(run_dir)
    if summary is not None and summary.steps:
        raise ConfigError(
            "resume",
            resume,
            f"a run folder with its {LAST_CHECKPOINT} (put it back), or `python -m trainspeed.reproduce {run_dir}` to "
            "train the run again in a new folder",
            problem=f"its record says it trained {summary.steps} steps, but {LAST_CHECKPOINT} is missing: it would "
            "train again from step 0 over that record",
        )


def check_resume_checkpoint(argv: list[str]) -> None:
    """For `resume=RUN_DIR` on the command line (expanded by resume.resume_arguments): refuse an unusable
    checkpoint before Hydra starts, so the run folder keeps its record as it was (Hydra would rewrite its .hydra/
    files, a refused run its summary.json)."""
    given = {override_key(a): override_value(a) for a in argv if "=" in a}
    resume, ckpt_path = (
        None if given.get(k) in (None, "", "null") else given[k] for k in ("resume", "ckpt_path")
    )
    if resume:
        start_checkpoint(Path(resume), resume, ckpt_path)
