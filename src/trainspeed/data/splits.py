"""Train / validation / test splits held as tensors, and the transforms applied to all of them at once."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split

from trainspeed.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Splits:
    """Images as float32 N x C x H x W and int64 labels, per split."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train[0].shape[1:])

    def map(self, fn) -> Splits:
        """Apply fn(x, y) -> (x, y) to every split."""
        return replace(self, **{s: fn(*getattr(self, s)) for s in SPLITS})


def split_by_seed(
    x: torch.Tensor, y: torch.Tensor, fractions: tuple[float, ...], seed: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Stratified split into len(fractions) + 1 parts: the first takes what the fractions leave.

    Seeded by the run seed (not a constant), so seeds vary the split as well as the initialization.
    """
    idx = np.arange(len(y))
    labels = y.numpy()
    parts, rest = [], idx
    remaining = 1.0
    for fraction in fractions:
        if fraction <= 0:
            parts.append(rest[:0])
            continue
        share = fraction / remaining
        counts = np.bincount(labels[rest])
        classes = int((counts > 0).sum())
        # stratify when every class can appear on both sides; tiny data sets fall back to a plain shuffle
        stratify = labels[rest] if counts[counts > 0].min() >= 2 and share * len(rest) >= classes else None
        try:
            rest, part = train_test_split(rest, test_size=share, random_state=seed, stratify=stratify)
        except ValueError as err:  # too few samples to leave every split one
            raise DataError(
                f"{len(y)} samples cannot be split into training, validation and test sets by the fractions "
                f"{', '.join(f'{f:g}' for f in fractions)} ({str(err).splitlines()[0]}); give the data set more "
                "samples, or other data.val_fraction / data.test_fraction"
            ) from None
        parts.append(part)
        remaining -= fraction
    out = [rest, *parts]
    return [(x[torch.as_tensor(p)], y[torch.as_tensor(p)]) for p in out]


def select_classes(
    x: torch.Tensor, y: torch.Tensor, names: tuple[str, ...], classes: list[int] | None
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Keep only the listed class indices and re-index their labels 0..k-1 in the given order."""
    if classes is None:
        return x, y, names
    bad = [c for c in classes if not 0 <= int(c) < len(names)]
    if bad or len(set(classes)) != len(classes) or len(classes) < 2:
        raise ConfigError(
            "data.classes", list(classes), f"2 or more distinct class indices in 0..{len(names) - 1}"
        )
    lookup = torch.full((len(names),), -1, dtype=torch.long)
    lookup[torch.as_tensor([int(c) for c in classes])] = torch.arange(len(classes))
    keep = lookup[y] >= 0
    return x[keep], lookup[y[keep]], tuple(names[int(c)] for c in classes)


def standardize(splits: Splits) -> Splits:
    """Per-channel zero mean / unit variance with the training split's statistics."""
    x = splits.train[0]
    dims = [0, *range(2, x.dim())]
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True).clamp_min(1e-6)
    return splits.map(lambda xs, ys: ((xs - mean) / std, ys))


def resize(splits: Splits, image_size: int | None) -> Splits:
    """Bilinear resize of every image to image_size x image_size (once, before training)."""
    if image_size is None or tuple(splits.input_shape[-2:]) == (image_size, image_size):
        return splits

    def fn(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if len(x) == 0:
            return x.new_zeros((0, x.shape[1], image_size, image_size)), y
        return F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False), y

    return splits.map(fn)
