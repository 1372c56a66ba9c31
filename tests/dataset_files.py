"""Write tiny data sets in the real on-disk formats, with seeded content, for tests to read back.

Each writer returns what it wrote, so a test can compare every pixel and label with what a reader gives.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def _labels(rng: np.random.Generator, n: int, num_classes: int = 10) -> np.ndarray:
    """Labels that cover the classes evenly, in a seeded order."""
    return rng.permutation(np.arange(n) % num_classes).astype(np.uint8)


def _write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    # IDX: two zero bytes, type 0x08 (unsigned byte), the number of dimensions, then big-endian int32 sizes.
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def mnist_raw_folder(root: str | Path, fashion: bool = False) -> Path:
    """The folder torchvision reads MNIST (or Fashion-MNIST) from: root/MNIST/raw or root/FashionMNIST/raw."""
    return Path(root) / ("FashionMNIST" if fashion else "MNIST") / "raw"


def write_mnist(
    root: str | Path,
    n_train: int = 20,
    n_test: int = 10,
    fashion: bool = False,
    gz: bool = False,
    seed: int = 0,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write MNIST-format idx files (28×28 uint8 images, uint8 labels) where torchvision looks for them.

    gz=True writes only the .gz files, as they are published. Returns {"train"|"test": (images N×28×28, labels N)}.
    """
    raw = mnist_raw_folder(root, fashion)
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = _labels(rng, n)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images, gz)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, gz)
        written[split] = (images, labels)
    return written


def cifar10_folder(root: str | Path) -> Path:
    """The folder torchvision reads CIFAR-10 from: root/cifar-10-batches-py."""
    return Path(root) / "cifar-10-batches-py"


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(
    root: str | Path, n_train: int = 20, n_test: int = 10, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write CIFAR-10 python pickles: data_batch_1..5 (the train images split across them), test_batch, batches.meta.

    Returns {"train"|"test": (images N×3×32×32 uint8, labels N)}; rows are stored as 3072 bytes, channel-major.
    """
    folder = cifar10_folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        labels = _labels(rng, n).astype(np.int64)
        written[split] = (images, labels)
    batches = {f"data_batch_{i + 1}": idx for i, idx in enumerate(np.array_split(np.arange(n_train), 5))}
    batches["test_batch"] = np.arange(n_test)
    for name, idx in batches.items():
        images, labels = written["test" if name == "test_batch" else "train"]
        entry = {
            "batch_label": name,
            "labels": labels[idx].tolist(),
            "data": images[idx].reshape(len(idx), -1),
            "filenames": [f"{i}.png" for i in idx],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR10_CLASSES, "num_cases_per_batch": 10000, "num_vis": 3072}, f)
    return written


def write_image_folder(
    root: str | Path,
    classes: tuple[str, ...] = ("cat", "dog"),
    per_class: int = 3,
    size: int | tuple[int, int] = 12,
    mode: str = "RGB",
    seed: int = 0,
) -> list[tuple[Path, str, np.ndarray]]:
    """Write root/<class>/<NNN>.png images (lossless) of `size` (an int, or (width, height)) in PIL `mode`.

    Returns (path, class, pixels H×W or H×W×C uint8) per image, in the order ImageFolder lists them when these are
    the only images in `root`.
    """
    width, height = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    channels = {"L": (), "RGB": (3,), "RGBA": (4,)}[mode]
    written = []
    for cls in sorted(classes):
        (Path(root) / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(height, width, *channels), dtype=np.uint8)
            path = Path(root) / cls / f"{i:03d}.png"
            Image.fromarray(pixels).save(path)  # the mode follows from the shape
            written.append((path, cls, pixels))
    return written
