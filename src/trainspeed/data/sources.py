"""Where each data set comes from: one loader per `data.name`, all returning Splits."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from trainspeed.data.splits import Splits, select_classes, split_by_seed
from trainspeed.errors import DataError
from trainspeed.options import NATIVE_CLASSES


def _split_all(x, y, names, cfg: DictConfig, seed: int) -> Splits:
    x, y, names = select_classes(x, y, names, cfg.get("classes"))
    train, val, test = split_by_seed(x, y, (cfg.val_fraction, cfg.test_fraction), seed)
    return Splits(train, val, test, names)


def digits(cfg: DictConfig, seed: int) -> Splits:
    """scikit-learn's bundled 8x8 digits as 1 x 8 x 8 images in [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.as_tensor(bunch.target, dtype=torch.long)
    return _split_all(x, y, tuple(str(n) for n in bunch.target_names), cfg, seed)


def synthetic(cfg: DictConfig, seed: int) -> Splits:
    """Gaussian clusters around one random centre per class; the data itself is fixed by seed."""
    generator = torch.Generator().manual_seed(seed)
    shape = tuple(int(s) for s in cfg.shape)
    y = torch.randint(0, cfg.num_classes, (cfg.num_samples,), generator=generator)
    centres = torch.randn((cfg.num_classes, *shape), generator=generator)
    x = centres[y] + cfg.noise * torch.randn((cfg.num_samples, *shape), generator=generator)
    if len(shape) == 1:
        x = x.view(cfg.num_samples, shape[0], 1, 1)
    return _split_all(x, y, tuple(str(i) for i in range(cfg.num_classes)), cfg, seed)


def torchvision_set(cfg: DictConfig, seed: int) -> Splits:
    """MNIST, Fashion-MNIST or CIFAR-10 from data.root; validation carved from the training files."""
    from trainspeed.data.disk_datasets import load_torchvision_split

    x_train, y_train = load_torchvision_split(cfg.name, cfg.root, train=True, download=cfg.download)
    x_test, y_test = load_torchvision_split(cfg.name, cfg.root, train=False, download=False)
    names = tuple(str(i) for i in range(NATIVE_CLASSES[cfg.name]))  # the readers refuse labels outside these
    x_train, y_train, subset = select_classes(x_train, y_train, names, cfg.get("classes"))
    x_test, y_test, _ = select_classes(x_test, y_test, names, cfg.get("classes"))
    train, val = split_by_seed(x_train, y_train, (cfg.val_fraction,), seed)
    return Splits(train, val, (x_test, y_test), subset)


def image_folder(cfg: DictConfig, seed: int) -> Splits:
    """A folder of class sub-folders, split by the run seed."""
    from trainspeed.data.disk_datasets import load_image_folder

    x, y, names = load_image_folder(cfg.root, cfg.image_size)
    if len(names) < 2:  # a classifier of one class has nothing to learn (torchmetrics refuses it, too)
        raise DataError(
            f"{cfg.root} holds {len(names)} class folder(s) ({', '.join(names) or 'none'}); an image folder needs "
            "one sub-folder per class, at least 2"
        )
    return _split_all(x, y, tuple(names), cfg, seed)


SOURCES = {
    "digits": digits,
    "synthetic": synthetic,
    "mnist": torchvision_set,
    "fashion_mnist": torchvision_set,
    "cifar10": torchvision_set,
    "imagefolder": image_folder,
}


def load_splits(cfg: DictConfig, seed: int) -> Splits:
    """The raw splits of the data set named by data.name (one of SOURCES, validated)."""
    return SOURCES[cfg.name](cfg, seed)
