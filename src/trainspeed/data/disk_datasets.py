"""Readers for the real data sets on disk: torchvision's MNIST / Fashion-MNIST / CIFAR-10 files and image folders.

Each reader returns whole tensors (x float32 N×C×H×W in [0, 1], y int64 N) so the data can live on the training
device and be batched by index. Nothing downloads unless asked.
"""

from __future__ import annotations

import gzip
import pickle
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.datasets import CIFAR10, MNIST, FashionMNIST, ImageFolder
from torchvision.datasets.mnist import read_image_file, read_label_file

from trainspeed.errors import DataError
from trainspeed.options import NATIVE_CLASSES
from trainspeed.record.atomic import replacing

TORCHVISION_SETS = ("mnist", "fashion_mnist", "cifar10")

_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"}


class _CIFAR10Files(CIFAR10):
    """torchvision's CIFAR10 with its md5 checks reduced to "the file exists".

    torchvision compares every batch file with the md5 of the official release, so any other copy in the same
    format (a re-pickled one, or the tiny files the tests write) reads as "not found". A corrupt file still fails,
    in the pickle reading, which we keep. The downloaded archive's md5 is still checked.
    """

    train_list = [[name, None] for name, _ in CIFAR10.train_list]
    test_list = [[name, None] for name, _ in CIFAR10.test_list]
    meta = {**CIFAR10.meta, "md5": None}


def load_torchvision_split(
    name: str, root: str | Path, train: bool, download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of MNIST, Fashion-MNIST or CIFAR-10 from torchvision's on-disk layout under `root`.

    x: float32 N×C×H×W in [0, 1] (MNIST/Fashion: 1×28×28, CIFAR-10: 3×32×32); y: int64 N.
    """
    if name in ("mnist", "fashion_mnist"):
        return _load_mnist(MNIST if name == "mnist" else FashionMNIST, Path(root), train, download)
    return _load_cifar10(Path(root), train, download)  # cifar10: data.name is validated


def _load_mnist(
    cls: type[MNIST], root: Path, train: bool, download: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    raw = root / cls.__name__ / "raw"
    files = [raw / f for f in _MNIST_FILES]
    for file in files:
        gz = file.with_name(file.name + ".gz")
        # The standard files are published gzipped; torchvision reads them only once they are unpacked.
        if not file.is_file() and gz.is_file():
            _unpack(gz, file, root)
    if not download:
        _require(cls.__name__, root, raw, files)
    try:
        ds = cls(str(root), train=train, download=download)
    except Exception as err:
        prefix = "train" if train else "t10k"
        checks = [
            (raw / f"{prefix}-images-idx3-ubyte", read_image_file),
            (raw / f"{prefix}-labels-idx1-ubyte", read_label_file),
        ]
        raise _unreadable(cls.__name__, root, raw, download, err, checks) from err
    x, y = ds.data, ds.targets
    if x.ndim != 3 or len(x) != len(y):
        raise DataError(f"{cls.__name__} files in {raw} disagree: {tuple(x.shape)} images, {len(y)} labels")
    labels_file = raw / f"{'train' if train else 't10k'}-labels-idx1-ubyte"
    _check_labels(cls.__name__, len(cls.classes), root, {labels_file: y})
    return x.unsqueeze(1).float().div_(255), y.long()


def _unpack(gz: Path, file: Path, root: Path) -> None:
    """Unpack a published .gz next to it, under a temporary name renamed into place only once it is whole: a
    failed unpack leaves no partial file behind that later loads would take for the real one."""
    try:
        with replacing(file) as partial, gzip.open(gz, "rb") as packed, partial.open("wb") as unpacked:
            shutil.copyfileobj(packed, unpacked)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"cannot unpack {gz} ({err or type(err).__name__}); replace it with the standard file "
            f"(data.root={str(root)!r})"
        ) from err


def _check_labels(what: str, count: int, root: Path, labels: dict[Path, torch.Tensor]) -> None:
    """Refuse a label outside 0..count-1 in any of the files: it would silently add classes to the model."""
    for path, y in labels.items():
        bad = ((y < 0) | (y >= count)).nonzero().flatten()
        if len(bad):
            first = int(bad[0])
            more = f" (and {len(bad) - 1} more out of range)" if len(bad) > 1 else ""
            raise DataError(
                f"{what} file {path} has label {int(y[first])} at index {first}{more}; accepted: labels "
                f"0-{count - 1} (the {count} {what} classes). Replace it with the standard file "
                f"(data.root={str(root)!r})"
            )


def _load_cifar10(root: Path, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    folder = root / CIFAR10.base_folder
    names = [n for n, _ in CIFAR10.train_list + CIFAR10.test_list] + [CIFAR10.meta["filename"]]
    if not download:
        _require("CIFAR-10", root, folder, [folder / n for n in names])
    try:
        ds = _CIFAR10Files(str(root), train=train, download=download)
    except Exception as err:
        split = CIFAR10.train_list if train else CIFAR10.test_list
        checks = [(folder / n, _read_cifar_batch) for n, _ in split] + [
            (folder / CIFAR10.meta["filename"], _read_pickle)
        ]
        raise _unreadable("CIFAR-10", root, folder, download, err, checks) from err
    x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2)  # torchvision holds N×H×W×C
    y = torch.tensor(ds.targets, dtype=torch.int64)
    if len(x) != len(y):
        raise DataError(f"CIFAR-10 files in {folder} disagree: {len(x)} images, {len(y)} labels")
    if ((y < 0) | (y >= NATIVE_CLASSES["cifar10"])).any():  # name the batch file that holds the bad label
        split = CIFAR10.train_list if train else CIFAR10.test_list
        batches = {folder / n: torch.as_tensor(_read_pickle(folder / n)["labels"]) for n, _ in split}
        _check_labels("CIFAR-10", NATIVE_CLASSES["cifar10"], root, batches)
    return x.float().div_(255).contiguous(), y


def _read_pickle(path: str | Path) -> object:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def _read_cifar_batch(path: str | Path) -> None:
    entry = _read_pickle(path)
    if not isinstance(entry, dict) or "labels" not in entry or np.asarray(entry["data"]).size % (3 * 32 * 32):
        raise ValueError("not a CIFAR-10 batch (a dict with 'data' rows of 3072 bytes and 'labels')")


def _require(what: str, root: Path, folder: Path, files: list[Path]) -> None:
    """Refuse missing files with one message: the key, the folder torchvision reads, and how to get the files."""
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        absent = "none of them is there" if len(missing) == len(files) else "missing: " + ", ".join(missing)
        raise DataError(
            f"data.root={str(root)!r}: the {what} files are not there. torchvision reads them from {folder} "
            f"and needs {', '.join(f.name for f in files)} ({absent}). "
            f"Set data.download=true to download them, or copy the standard files into {folder}."
        )


def _unreadable(
    what: str,
    root: Path,
    folder: Path,
    download: bool,
    err: Exception,
    checks: list[tuple[Path, Callable[[str], object]]],
) -> DataError:
    """The DataError for a failed load, naming the first file that does not read on its own."""
    for path, read in checks:
        if not path.is_file():
            continue
        try:
            read(str(path))
        except Exception as file_err:
            return DataError(
                f"{what} file {path} is unreadable or corrupt ({file_err or type(file_err).__name__}); "
                f"replace it with the standard file (data.root={str(root)!r})"
            )
    if download:
        return DataError(f"downloading {what} into {folder} (data.root={str(root)!r}) failed: {err}")
    return DataError(f"cannot read the {what} files in {folder} (data.root={str(root)!r}): {err}")


class _VisibleImageFolder(ImageFolder):
    """torchvision's ImageFolder without hidden class folders (`.ipynb_checkpoints`, `.git`, ...): torchvision
    makes every sub-folder a class, so an editor's or a notebook's hidden folder would add a class to the head."""

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        classes = sorted(
            e.name for e in Path(directory).iterdir() if e.is_dir() and not e.name.startswith(".")
        )
        if not classes:
            raise FileNotFoundError(f"Couldn't find any class folder in {directory}.")
        return classes, {name: i for i, name in enumerate(classes)}


# integer grey modes of more than 8 bits, and the largest value each holds ("I": 32-bit, read as 16-bit data, the
# way 16-bit PNGs and TIFFs often open)
_DEEP_GREY = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535}


def _decoded(img: Image.Image, path: str) -> Image.Image:
    """The image as 8-bit L or RGB, or, for a grey mode of more bits (16-bit, 32-bit integer, float), as a float
    image (mode F) in [0, 1] scaled by its bit depth: PIL's convert("L") clips such values to 0..255 instead."""
    if img.mode not in _DEEP_GREY and img.mode != "F":
        return img.convert("L" if img.mode in _GREY_MODES else "RGB")
    pixels = np.asarray(img, dtype=np.float64)
    top = _DEEP_GREY.get(img.mode, 1.0)
    low, high = (float(pixels.min()), float(pixels.max())) if pixels.size else (0.0, 0.0)
    if low < 0 or high > top or not np.isfinite(pixels).all():
        held = "0-65535" if img.mode in _DEEP_GREY else "0-1"
        raise DataError(
            f"image {path} (mode {img.mode}) holds values from {low:g} to {high:g}; accepted: values in {held} "
            f"for this mode (8-bit images, 16-bit integers, or floats in [0, 1])"
        )
    return Image.fromarray((pixels / top).astype(np.float32), mode="F")


def load_image_folder(
    root: str | Path, image_size: int | None
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A folder of class sub-folders (ImageFolder layout) as x float32 N×C×H×W in [0, 1], y int64, class names.

    Every image is decoded once and resized to image_size×image_size; with image_size None all images must have
    the first image's size. All grey images give C=1; any colour image makes every image RGB (C=3). Pixels are
    scaled by their bit depth (8-bit, 16-bit); float images must hold values in [0, 1]. Hidden folders (a name
    starting with a dot) are not classes.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"data.root={str(root)!r}: no such folder; expected root/<class>/<image> (ImageFolder layout)"
        )
    try:
        folder = _VisibleImageFolder(str(root))
    except (FileNotFoundError, ValueError) as err:
        raise DataError(
            f"data.root={str(root)!r} is not an image folder (root/<class>/<image>): {err}"
        ) from err
    arrays, size = [], (image_size, image_size) if image_size is not None else None
    for path, _ in folder.samples:
        try:
            with Image.open(path) as img:
                img = _decoded(img, path)
        except (OSError, ValueError) as err:
            raise DataError(f"image {path} is unreadable: {err}") from err
        if size is None:
            size = img.size
        if img.size != size:
            if image_size is None:
                raise DataError(
                    f"image {path} is {img.size[0]}×{img.size[1]}, but {folder.samples[0][0]} is "
                    f"{size[0]}×{size[1]}; set data.image_size to resize all images to one size"
                )
            img = img.resize(size, Image.Resampling.BILINEAR)
        pixels = np.asarray(img).reshape(size[1], size[0], -1)
        arrays.append(pixels if img.mode == "F" else pixels.astype(np.float32) / 255)
    channels = max(a.shape[2] for a in arrays)
    # Grey images among colour ones become RGB by repeating the channel, as PIL's convert("RGB") does.
    x = np.stack([np.repeat(a, channels // a.shape[2], axis=2) for a in arrays])
    x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(folder.targets, dtype=torch.int64), list(folder.classes)
