"""The on-disk readers read the real formats exactly and refuse missing or corrupt data with a DataError."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from dataset_files import cifar10_folder, mnist_raw_folder, write_cifar10, write_image_folder, write_mnist
from omegaconf import OmegaConf
from PIL import Image
from torchvision.datasets import CIFAR10, MNIST

from trainspeed.data.disk_datasets import TORCHVISION_SETS, load_image_folder, load_torchvision_split
from trainspeed.errors import ConfigError, DataError

WRITERS = {
    "mnist": (lambda root, **kw: write_mnist(root, **kw), lambda root: mnist_raw_folder(root), (1, 28, 28)),
    "fashion_mnist": (
        lambda root, **kw: write_mnist(root, fashion=True, **kw),
        lambda root: mnist_raw_folder(root, fashion=True),
        (1, 28, 28),
    ),
    "cifar10": (lambda root, **kw: write_cifar10(root, **kw), cifar10_folder, (3, 32, 32)),
}


IDX_HEADER_ONLY = b"\x00\x00\x08\x03" + (20).to_bytes(4, "big")  # an idx3 header cut short, no pixels


def as_nchw(images: np.ndarray) -> torch.Tensor:
    """What the reader must return for uint8 images N×H×W (grey) or N×C×H×W."""
    x = torch.from_numpy(images)
    return (x.unsqueeze(1) if x.ndim == 3 else x).float() / 255


@pytest.mark.parametrize("name", TORCHVISION_SETS)
@pytest.mark.parametrize("train", [True, False])
def test_torchvision_split_reads_every_pixel_and_label(tmp_path, name, train):
    write, _, shape = WRITERS[name]
    images, labels = write(tmp_path, n_train=15, n_test=7)["train" if train else "test"]
    x, y = load_torchvision_split(name, tmp_path, train=train)
    assert x.shape == (15 if train else 7, *shape) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.tolist() == labels.tolist()
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.is_contiguous()
    assert x[3, 0, 5, 7].item() == pytest.approx(
        images.reshape(len(images), -1, *shape[1:])[3, 0, 5, 7] / 255
    )
    assert torch.equal(x, as_nchw(images))


def test_mnist_reads_the_published_gz_files(tmp_path):
    images, labels = write_mnist(tmp_path, gz=True)["train"]
    x, y = load_torchvision_split("mnist", tmp_path, train=True)
    assert torch.equal(x, as_nchw(images)) and y.tolist() == labels.tolist()


@pytest.mark.parametrize("name", TORCHVISION_SETS)
def test_missing_files_name_the_key_the_folder_and_the_remedy(tmp_path, name, monkeypatch):
    monkeypatch.setattr(MNIST, "download", lambda self: pytest.fail("downloaded without data.download=true"))
    monkeypatch.setattr(
        CIFAR10, "download", lambda self: pytest.fail("downloaded without data.download=true")
    )
    with pytest.raises(DataError) as err:
        load_torchvision_split(name, tmp_path / "nowhere", train=True)
    msg = str(err.value)
    assert "data.root" in msg and str(WRITERS[name][1](tmp_path / "nowhere")) in msg
    assert "data.download=true" in msg


def test_mnist_needs_all_four_files_and_names_the_missing_one(tmp_path):
    write_mnist(tmp_path)
    (mnist_raw_folder(tmp_path) / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing: t10k-labels-idx1-ubyte"):
        load_torchvision_split("mnist", tmp_path, train=True)


@pytest.mark.parametrize(
    "name, file, content",
    [
        ("mnist", "train-images-idx3-ubyte", IDX_HEADER_ONLY),
        ("mnist", "train-labels-idx1-ubyte", b""),
        ("fashion_mnist", "train-images-idx3-ubyte", b"not an idx file at all"),
        ("cifar10", "data_batch_3", b"not a pickle"),
        ("cifar10", "batches.meta", b""),
    ],
)
def test_corrupt_file_is_named(tmp_path, name, file, content):
    write, folder, _ = WRITERS[name]
    write(tmp_path)
    (folder(tmp_path) / file).write_bytes(content)
    with pytest.raises(DataError) as err:
        load_torchvision_split(name, tmp_path, train=True)
    assert str(folder(tmp_path) / file) in str(err.value)


def test_mnist_images_and_labels_of_different_lengths_are_refused(tmp_path):
    write_mnist(tmp_path, n_train=20)
    other = tmp_path / "other"
    write_mnist(other, n_train=5)
    raw = mnist_raw_folder(tmp_path)
    (raw / "train-labels-idx1-ubyte").write_bytes(
        (mnist_raw_folder(other) / "train-labels-idx1-ubyte").read_bytes()
    )
    with pytest.raises(DataError, match="20, 28, 28.*5 labels"):
        load_torchvision_split("mnist", tmp_path, train=True)


@pytest.mark.parametrize("name, cls", [("mnist", MNIST), ("cifar10", CIFAR10)])
def test_download_true_goes_through_torchvision(tmp_path, monkeypatch, name, cls):
    calls = []

    def fake_download(self):
        calls.append(self.root)
        WRITERS[name][0](tmp_path, n_train=10, n_test=5)

    monkeypatch.setattr(cls, "download", fake_download)
    x, y = load_torchvision_split(name, tmp_path, train=False, download=True)
    assert calls == [str(tmp_path)] and len(x) == len(y) == 5


def test_failed_download_is_a_data_error(tmp_path, monkeypatch):
    monkeypatch.setattr(MNIST, "download", lambda self: (_ for _ in ()).throw(RuntimeError("no network")))
    with pytest.raises(DataError, match="downloading MNIST.*no network"):
        load_torchvision_split("mnist", tmp_path, train=True, download=True)


def test_unknown_set_name_is_refused_before_loading(make_config):
    """Validation refuses the name (the loaders trust a validated config)."""
    from trainspeed.validation import validate

    with pytest.raises(ConfigError, match="data.name.*did you mean mnist"):
        validate(make_config("data=mnist", "data.name=minst"))


def test_image_folder_reads_rgb_exactly_with_sorted_classes(tmp_path):
    written = write_image_folder(tmp_path, classes=("dog", "cat"), per_class=3, size=(12, 9))
    x, y, classes = load_image_folder(tmp_path, image_size=None)
    assert classes == ["cat", "dog"] and y.tolist() == [0, 0, 0, 1, 1, 1] and y.dtype == torch.int64
    assert x.shape == (6, 3, 9, 12) and x.dtype == torch.float32
    expected = torch.stack([torch.from_numpy(p).permute(2, 0, 1) for _, _, p in written]).float() / 255
    assert torch.equal(x, expected)
    assert x[4, 2, 8, 11].item() == pytest.approx(written[4][2][8, 11, 2] / 255)


def test_image_folder_all_grey_gives_one_channel(tmp_path):
    written = write_image_folder(tmp_path, per_class=2, size=10, mode="L")
    x, y, _ = load_image_folder(tmp_path, image_size=None)
    assert x.shape == (4, 1, 10, 10)
    assert torch.equal(x, as_nchw(np.stack([p for _, _, p in written])))


def test_image_folder_grey_among_colour_becomes_rgb(tmp_path):
    grey = write_image_folder(tmp_path, classes=("a",), per_class=2, size=8, mode="L", seed=1)
    colour = write_image_folder(tmp_path, classes=("b",), per_class=2, size=8, mode="RGBA", seed=2)
    x, y, classes = load_image_folder(tmp_path, image_size=None)
    assert classes == ["a", "b"] and x.shape == (4, 3, 8, 8)
    for c in range(3):  # grey repeated in every channel; alpha dropped
        assert torch.equal(x[0, c], torch.from_numpy(grey[0][2]).float() / 255)
    assert torch.equal(x[3], torch.from_numpy(colour[1][2][..., :3]).permute(2, 0, 1).float() / 255)


def test_image_folder_resizes_every_image(tmp_path):
    write_image_folder(tmp_path, classes=("a",), per_class=2, size=12)
    write_image_folder(tmp_path, classes=("b",), per_class=1, size=(20, 7))
    Image.new("RGB", (30, 30), (10, 200, 40)).save(tmp_path / "b" / "solid.png")
    x, y, _ = load_image_folder(tmp_path, image_size=6)
    assert x.shape == (4, 3, 6, 6) and y.tolist() == [0, 0, 1, 1]
    assert 0.0 <= x.min() and x.max() <= 1.0
    solid = torch.tensor([10, 200, 40], dtype=torch.float32).div(255).view(3, 1, 1).expand(3, 6, 6)
    assert torch.allclose(x[3], solid, atol=1 / 255)  # a resized solid colour keeps its colour


def test_image_folder_scales_16_bit_and_float_images_by_their_depth(tmp_path):
    """PIL's convert("L") clips 16-bit and float pixels to 0..255: 16-bit images loaded nearly white, floats in
    [0, 1] all black."""
    rng = np.random.default_rng(0)
    deep = rng.integers(0, 65536, size=(2, 8, 8), dtype=np.uint16)
    floats = rng.random((2, 8, 8), dtype=np.float32)
    for i, pixels in enumerate(deep):
        (tmp_path / "a").mkdir(exist_ok=True)
        Image.fromarray(pixels).save(tmp_path / "a" / f"{i}.png")  # a 16-bit grey PNG
    for i, pixels in enumerate(floats):
        (tmp_path / "b").mkdir(exist_ok=True)
        Image.fromarray(pixels, mode="F").save(tmp_path / "b" / f"{i}.tiff")
    x, y, classes = load_image_folder(tmp_path, image_size=None)
    assert classes == ["a", "b"] and x.shape == (4, 1, 8, 8) and y.tolist() == [0, 0, 1, 1]
    torch.testing.assert_close(x[:2, 0], torch.from_numpy(deep.astype(np.float32) / 65535))
    torch.testing.assert_close(x[2:, 0], torch.from_numpy(floats))
    resized, _, _ = load_image_folder(tmp_path, image_size=4)  # bilinear on the full depth
    assert resized.shape == (4, 1, 4, 4) and 0 <= resized.min() and resized.max() <= 1
    assert resized[:2].std() > 0.1  # not clipped to one value


def test_image_folder_refuses_float_pixels_outside_0_1_naming_the_file(tmp_path):
    write_image_folder(tmp_path, classes=("a",), per_class=2, size=8, mode="L")
    (tmp_path / "b").mkdir()
    bad = tmp_path / "b" / "raw.tiff"
    Image.fromarray(np.full((8, 8), 200.0, dtype=np.float32), mode="F").save(bad)
    with pytest.raises(DataError) as err:
        load_image_folder(tmp_path, image_size=None)
    assert str(err.value) == (
        f"image {bad} (mode F) holds values from 200 to 200; accepted: values in 0-1 for this mode (8-bit "
        "images, 16-bit integers, or floats in [0, 1])"
    )


def test_image_folder_hidden_folders_are_not_classes(tmp_path):
    write_image_folder(tmp_path, classes=("a", "b"), per_class=2, size=8)
    write_image_folder(tmp_path, classes=(".ipynb_checkpoints",), per_class=1, size=8)
    (tmp_path / ".git").mkdir()
    x, y, classes = load_image_folder(tmp_path, image_size=None)
    assert classes == ["a", "b"] and x.shape == (4, 3, 8, 8) and y.tolist() == [0, 0, 1, 1]


def test_image_folder_sizes_differ_without_image_size(tmp_path):
    write_image_folder(tmp_path, classes=("a",), per_class=2, size=12)
    odd = write_image_folder(tmp_path, classes=("b",), per_class=1, size=(13, 12))[0][0]
    with pytest.raises(DataError, match="data.image_size") as err:
        load_image_folder(tmp_path, image_size=None)
    assert str(odd) in str(err.value) and "13×12" in str(err.value)


def test_image_folder_missing_root(tmp_path):
    with pytest.raises(DataError, match="data.root") as err:
        load_image_folder(tmp_path / "absent", image_size=8)
    assert str(tmp_path / "absent") in str(err.value)


def test_image_folder_without_class_folders(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "loose.png")
    with pytest.raises(DataError, match="data.root.*class folder") as err:
        load_image_folder(tmp_path, image_size=8)
    assert str(tmp_path) in str(err.value)


def test_image_folder_unreadable_image_is_named(tmp_path):
    write_image_folder(tmp_path, per_class=2)
    bad = tmp_path / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError) as err:
        load_image_folder(tmp_path, image_size=8)
    assert str(bad) in str(err.value)


def test_a_failed_unpack_leaves_nothing_behind_and_a_good_gz_then_loads(tmp_path):
    write_mnist(tmp_path, gz=True)
    raw = mnist_raw_folder(tmp_path)
    labels_gz = raw / "train-labels-idx1-ubyte.gz"
    good = labels_gz.read_bytes()
    labels_gz.write_bytes(good[: len(good) // 2])  # a download cut short
    for _ in range(2):  # the second load meets the same .gz, not a partial file left by the first
        with pytest.raises(DataError) as err:
            load_torchvision_split("mnist", tmp_path, train=True)
        assert f"cannot unpack {labels_gz}" in str(err.value) and "data.root" in str(err.value)
        assert not (raw / "train-labels-idx1-ubyte").exists()
        # the files are unpacked in order: the one before is whole, no temporary file is left
        unpacked = sorted(p.name for p in raw.iterdir() if not p.name.endswith(".gz"))
        assert unpacked == ["train-images-idx3-ubyte"]
    labels_gz.write_bytes(good)
    x, y = load_torchvision_split("mnist", tmp_path, train=True)
    assert len(x) == len(y) == 20


def _set_mnist_label(raw, prefix: str, index: int, label: int) -> None:
    path = raw / f"{prefix}-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[8 + index] = label  # after the idx1 header: magic and count
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "name, train, label, file",
    [
        ("mnist", True, 200, "train-labels-idx1-ubyte"),
        ("fashion_mnist", False, 10, "t10k-labels-idx1-ubyte"),
        ("cifar10", True, 42, "data_batch_4"),
        ("cifar10", False, -1, "test_batch"),
    ],
)
def test_a_label_outside_the_classes_is_refused_naming_the_file(tmp_path, name, train, label, file):
    write, folder, _ = WRITERS[name]
    write(tmp_path)
    path = folder(tmp_path) / file
    if name == "cifar10":
        entry = pickle.loads(path.read_bytes())
        entry["labels"][2] = label
        path.write_bytes(pickle.dumps(entry))
    else:
        _set_mnist_label(folder(tmp_path), file.split("-")[0], 2, label)
    with pytest.raises(DataError) as err:
        load_torchvision_split(name, tmp_path, train=train)
    message = str(err.value)
    assert f"file {path} has label {label} at index 2" in message
    assert "accepted: labels 0-9" in message and "\n" not in message


def test_the_class_count_is_the_data_sets_not_the_largest_label(tmp_path):
    from trainspeed.data.sources import torchvision_set

    write_mnist(tmp_path, n_train=20, n_test=10)
    raw = mnist_raw_folder(tmp_path)
    for prefix, n in (("train", 20), ("t10k", 10)):  # no file holds class 9
        for i in range(n):
            _set_mnist_label(raw, prefix, i, i % 9)
    cfg = OmegaConf.create(
        {"name": "mnist", "root": str(tmp_path), "download": False, "val_fraction": 0.2, "classes": None}
    )
    splits = torchvision_set(cfg, seed=0)
    assert splits.num_classes == 10 and splits.class_names == tuple(str(i) for i in range(10))


def test_an_image_folder_of_one_class_and_a_data_set_too_small_to_split_are_one_line(tmp_path):
    from trainspeed.data.sources import image_folder, synthetic

    write_image_folder(tmp_path, classes=("cat",), per_class=4, size=8)
    one_class = OmegaConf.create(
        {"root": str(tmp_path), "image_size": None, "val_fraction": 0.2, "test_fraction": 0.2}
    )
    with pytest.raises(DataError, match=r"holds 1 class folder\(s\) \(cat\); an image folder needs"):
        image_folder(one_class, seed=0)
    tiny = OmegaConf.create(
        {
            "shape": [4],
            "num_classes": 2,
            "num_samples": 2,
            "noise": 0.1,
            "val_fraction": 0.15,
            "test_fraction": 0.15,
        }
    )
    with pytest.raises(DataError, match=r"2 samples cannot be split .* by the fractions 0.15, 0.15"):
        synthetic(tiny, seed=0)
