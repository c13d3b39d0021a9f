"""Image datasets: scikit-learn's 8x8 digits, CIFAR-10 from a local folder, and any folder of PNG/JPEG files.

Every dataset is a ``torch.utils.data.Dataset`` of (image, label) with images float32 in [-1, 1] of shape
``data_shape`` (C, H, W), and has ``sample(n, generator)`` for random real images. Nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from bregzoo import BregzooError

DIGITS_TEST_SIZE = 360  # of 1,797; the split is a fixed permutation (numpy RandomState(0), frozen across versions)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class TensorImages(Dataset):
    """Images held in memory as integers 0..levels, (N, C, H, W), with integer labels."""

    def __init__(self, name: str, pixels: Tensor, labels: Tensor, levels: int = 255) -> None:
        if pixels.ndim != 4:
            raise BregzooError(f"{name}: images must be (N, C, H, W), got shape {tuple(pixels.shape)}")
        if len(pixels) == 0:
            raise BregzooError(f"{name}: the dataset is empty")
        self.name, self.pixels, self.labels, self.levels = name, pixels, labels, levels
        self.data_shape = tuple(pixels.shape[1:])

    def to_float(self, pixels: Tensor) -> Tensor:
        """Integer pixels -> float32 in [-1, 1]."""
        return pixels.float() / (self.levels / 2) - 1.0

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.to_float(self.pixels[i]), int(self.labels[i])

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n random real images (with replacement), float32 in [-1, 1], on the CPU."""
        idx = torch.randint(len(self), (n,), generator=generator)
        return self.to_float(self.pixels[idx])

    @property
    def std(self) -> float:
        """Pixel standard deviation in [-1, 1] units (a data-driven EDM sigma_data)."""
        if not hasattr(self, "_std"):
            self._std = float(self.to_float(self.pixels[:10_000]).std())
        return self._std

    def __repr__(self) -> str:
        return f"TensorImages({self.name}: {len(self)} images of shape {self.data_shape})"


def digits(split: str = "train") -> TensorImages:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 17 grey levels), a fixed 1,437/360 train/test split."""
    from sklearn.datasets import load_digits  # ships its data file: no download

    bunch = load_digits()
    images = np.rint(bunch.images).astype(np.uint8)  # integers 0..16
    order = np.random.RandomState(0).permutation(len(images))
    idx = {"train": order[DIGITS_TEST_SIZE:], "test": order[:DIGITS_TEST_SIZE], "all": np.sort(order)}
    if split not in idx:
        raise BregzooError(f"digits: split must be 'train', 'test' or 'all', got {split!r}")
    pixels = torch.from_numpy(images[idx[split]])[:, None]
    labels = torch.from_numpy(bunch.target[idx[split]].astype(np.int64))
    return TensorImages(f"digits-{split}", pixels, labels, levels=16)


def cifar10(root: str | None = None, split: str = "train", format: str = "auto") -> TensorImages:
    """CIFAR-10 (3x32x32) from a local folder in the official binary format (or the python format, read safely).

    ``root`` is the extracted ``cifar-10-batches-bin`` folder or its parent; default ``$BREGZOO_CIFAR10`` or
    ``data``. Download https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz and extract it there.
    """
    from bregzoo_zoo import cifar_files

    if split not in ("train", "test"):
        raise BregzooError(f"cifar10: split must be 'train' or 'test', got {split!r}")
    folder, fmt = cifar_files.locate(root or os.environ.get("BREGZOO_CIFAR10", "data"), format)
    pixels, labels = cifar_files.read_split(folder, fmt, split)
    return TensorImages(f"cifar10-{split}", pixels, labels)


class ImageFolder(Dataset):
    """PNG/JPEG files under ``root`` (recursively), loaded lazily, resized and center-cropped to size x size.

    The label of a file is the index of its top-level subfolder (sorted), or 0 for files directly in ``root``.
    """

    def __init__(self, root: str | Path, size: int = 32, channels: int = 3) -> None:
        root = Path(os.path.expanduser(root))
        if not root.is_dir():
            raise BregzooError(f"image-folder: '{root}' is not a directory; pass image-folder:root=DIR, a folder of PNG/JPEG files")
        if channels not in (1, 3):
            raise BregzooError(f"image-folder: channels must be 1 (grey) or 3 (RGB), got {channels}")
        if not isinstance(size, int) or size < 1:
            raise BregzooError(f"image-folder: size must be a positive integer, got {size!r}")
        self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            raise BregzooError(f"image-folder: no .png/.jpg/.jpeg files under '{root}'")
        tops = sorted({p.relative_to(root).parts[0] for p in self.files if p.parent != root})
        self._label = {name: i for i, name in enumerate(tops)}
        self.root, self.size, self.channels = root, size, channels
        self.name = f"image-folder-{root.name}"
        self.data_shape = (channels, size, size)

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> Tensor:
        """Image i as float32 in [-1, 1], shape ``data_shape``."""
        from PIL import Image, ImageOps

        path = self.files[i]
        try:
            with Image.open(path) as im:
                im = im.convert("L" if self.channels == 1 else "RGB")
                im = ImageOps.fit(im, (self.size, self.size), method=Image.Resampling.BICUBIC)
                arr = np.asarray(im, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for unreadable/truncated files
            raise BregzooError(f"image-folder: cannot read '{path}' ({exc}); remove or replace the file") from None
        x = torch.from_numpy(arr.copy()).float() / 127.5 - 1.0
        return x[None] if self.channels == 1 else x.permute(2, 0, 1).contiguous()

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        rel = self.files[i].relative_to(self.root)
        return self.load(i), self._label.get(rel.parts[0], 0) if len(rel.parts) > 1 else 0

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n random images (with replacement), float32 in [-1, 1]."""
        idx = torch.randint(len(self), (n,), generator=generator)
        return torch.stack([self.load(int(i)) for i in idx])

    @property
    def std(self) -> float:
        """Pixel standard deviation estimated from up to 256 images."""
        if not hasattr(self, "_std"):
            self._std = float(self.sample(min(256, len(self)), torch.Generator().manual_seed(0)).std())
        return self._std


def image_folder(root: str, size: int = 32, channels: int = 3) -> ImageFolder:
    """Any folder of PNG/JPEG images, resized and center-cropped to size x size, 1 or 3 channels."""
    return ImageFolder(root, size, channels)
