"""Fingerprints of what a run reads: the data it trains on and the pretrained weights it starts from.

The record keeps them (summary.json `inputs`, and every checkpoint), so that a resume or a reproduction that reads
other data or other weights than the run did is said, instead of giving other numbers under the same name: a
changed file under `data.root`, an unset `$TRAINSPEED_DATA` that makes `data.root` another folder, a weights file
saved again.

The data's fingerprint is taken of the splits as loaded, before standardizing and resizing: the images and labels
of each split and the class names, so it does not depend on the files' format or place, only on what the run
trains, validates and tests on (the split itself depends on the seed: another seed is other data). Its float
values come from decoding the files, which does not vary with the machine; the resizing that follows could.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

ALGORITHM = "sha256"
_CHUNK = 1 << 20


def data_fingerprint(splits: Any) -> str:
    """sha256 of the class names and every split's images and labels (shape, dtype and bytes) of a data.Splits."""
    digest = hashlib.sha256()
    digest.update("\0".join(splits.class_names).encode())
    for name in ("train", "val", "test"):
        for tensor in getattr(splits, name):
            array = tensor.detach().cpu().contiguous().numpy()
            digest.update(f"|{name}:{array.dtype}:{tuple(array.shape)}|".encode())
            digest.update(memoryview(array).cast("B"))
    return f"{ALGORITHM}:{digest.hexdigest()}"


def file_fingerprint(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return f"{ALGORITHM}:{digest.hexdigest()}"


def short(fingerprint: str | None) -> str:
    """A fingerprint as messages show it: the algorithm and 12 hex digits."""
    if fingerprint is None:
        return "none"
    algorithm, _, digest = fingerprint.partition(":")
    return f"{algorithm}:{digest[:12]}"


def input_changes(recorded: dict[str, str | None], now: dict[str, str | None]) -> list[str]:
    """What differs between the inputs a record names and those read now, one phrase each ("the data: ... then,
    ... now"); an input the record does not name (written before fingerprints were kept) is not compared."""
    changes = []
    for name, what in (("data", "the data"), ("weights", "the pretrained weights")):
        then, current = recorded.get(name), now.get(name)
        if then is not None and then != current:
            changes.append(f"{what}: {short(then)} then, {short(current)} now")
    return changes
