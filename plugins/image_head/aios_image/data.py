"""Image data read offline: Fashion-MNIST from its IDX files, scikit-learn's digits for tests.

Fashion-MNIST (Zalando, MIT licence; 60,000 training and 10,000 test images, 28x28, ten classes)
comes from Debian's `dataset-fashion-mnist`, which installs the original gzipped IDX files. The
IDX format is tiny (a magic number giving the element type and rank, the dimensions, the raw
bytes), so it is read here directly and every inconsistency is reported by name.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aios.errors import AiosError

#: Where Debian's `dataset-fashion-mnist` puts the files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

#: The ten classes, in label order; a name after `/` is an alias a prompt may use.
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot/boot")

DIGIT_CLASSES = ("zero/0", "one/1", "two/2", "three/3", "four/4", "five/5", "six/6", "seven/7",
                 "eight/8", "nine/9")

#: IDX element types by their code in the magic number.
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class ImageSet:
    """uint8 images (count, height, width), int64 labels (count,) and the classes' names."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """An IDX file (gzipped when its name ends in .gz) as a NumPy array."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise AiosError(f"cannot read the IDX file {path} ({exc}); reinstall the data set") \
            from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise AiosError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    dtype, rank = np.dtype(_IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * rank
    if len(raw) < header:
        raise AiosError(f"{path} is truncated inside its header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise AiosError(f"{path} holds {len(raw)} bytes but its header {shape} needs "
                        f"{expected}; the file is truncated or corrupt, reinstall the data set")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(
        dtype.newbyteorder("="))


def load_fashion_mnist(split: str = "train",
                       directory: str | os.PathLike[str] = FASHION_MNIST_DIR) -> ImageSet:
    """The `train` (60,000) or `test` (10,000) split of Fashion-MNIST."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    directory = Path(directory)
    images_path = directory / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = directory / f"{prefix}-labels-idx1-ubyte.gz"
    if not images_path.exists() or not labels_path.exists():
        raise AiosError(f"Fashion-MNIST is not installed in {directory}; install it with "
                        "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu)")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise AiosError(f"{directory}: {images.shape} images do not match {labels.shape} labels")
    return ImageSet(images.astype(np.uint8), labels.astype(np.int64), FASHION_CLASSES)


def load_digits_set() -> ImageSet:
    """scikit-learn's bundled 8x8 digits (1,797 images, 0-16 grey levels scaled to 0-255)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise AiosError("the digits data set needs scikit-learn: pip install scikit-learn") \
            from exc
    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    return ImageSet(images, digits.target.astype(np.int64), DIGIT_CLASSES)


#: Data sets a recipe may name.
DATASETS = {"fashion-mnist": load_fashion_mnist, "digits": lambda split="train": _digits(split)}


def _digits(split: str) -> ImageSet:
    """Digits split deterministically: every fifth image is held out as `test`."""
    full = load_digits_set()
    held = np.arange(len(full.labels)) % 5 == 4
    keep = held if split == "test" else ~held
    return ImageSet(full.images[keep], full.labels[keep], full.classes)


def load_dataset(name: str, split: str = "train") -> ImageSet:
    if name not in DATASETS:
        raise ValueError(f"unknown image data set {name!r}; use one of {', '.join(DATASETS)}")
    return DATASETS[name](split)
