"""Readers for the two official CIFAR-10 layouts: the binary version (no unpickling) and the python version
(pickles read by an unpickler that admits numpy arrays and plain containers only, so a malicious file cannot
run code).

Binary record: 1 label byte, then 3,072 pixel bytes: the R, G, B planes of 32x32, row-major; 10,000 records
per file (the official files; smaller files with whole records are accepted, e.g. test fixtures).
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from bregzoo import BregzooError

RECORD_BYTES = 1 + 3 * 32 * 32
BIN_DIR, PY_DIR = "cifar-10-batches-bin", "cifar-10-batches-py"
BIN_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
FILES = {
    ("binary", "train"): [f"data_batch_{i}.bin" for i in range(1, 6)],
    ("binary", "test"): ["test_batch.bin"],
    ("python", "train"): [f"data_batch_{i}" for i in range(1, 6)],
    ("python", "test"): ["test_batch"],
}

# (module, name) pairs a CIFAR python batch needs: numpy array reconstruction and nothing else.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how python 3 pickles bytes at protocol 2
}


def missing_message(root: Path) -> str:
    """What to download and where to put it (one line)."""
    return (
        f"CIFAR-10 not found under '{root}': download {BIN_URL} and extract it with "
        f"'tar xzf cifar-10-binary.tar.gz -C {root}' so that '{root / BIN_DIR / 'data_batch_1.bin'}' exists, "
        "or pass cifar10:root=DIR pointing at the extracted folder or its parent"
    )


def locate(root: str | Path, fmt: str = "auto") -> tuple[Path, str]:
    """The folder that holds the batch files and its format ('binary' or 'python').

    ``root`` may be the extracted folder itself or its parent; the binary version wins when both exist.
    """
    if fmt not in ("auto", "binary", "python"):
        raise BregzooError(f"cifar10: format must be 'auto', 'binary' or 'python', got {fmt!r}")
    root = Path(os.path.expanduser(root))
    candidates = []
    if fmt in ("auto", "binary"):
        candidates += [(root, "data_batch_1.bin", "binary"), (root / BIN_DIR, "data_batch_1.bin", "binary")]
    if fmt in ("auto", "python"):
        candidates += [(root, "data_batch_1", "python"), (root / PY_DIR, "data_batch_1", "python")]
    for folder, probe, found in candidates:
        if (folder / probe).is_file() or (folder / FILES[(found, "test")][0]).is_file():
            return folder, found
    raise BregzooError(missing_message(root))


def read_binary(path: Path) -> tuple[Tensor, Tensor]:
    """(pixels uint8 (N, 3, 32, 32), labels int64 (N,)) from one binary batch file."""
    raw = _read_bytes(path)
    if len(raw) == 0 or len(raw) % RECORD_BYTES:
        raise BregzooError(
            f"CIFAR-10 file '{path}' has {len(raw):,} bytes, not a whole number of {RECORD_BYTES:,}-byte records "
            f"(an official batch is {10_000 * RECORD_BYTES:,} bytes); it is truncated or corrupt: "
            f"download {BIN_URL} and extract it again"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    _check_labels(labels, path)
    pixels = rearrange(records[:, 1:], "n (c h w) -> n c h w", c=3, h=32, w=32)
    return torch.from_numpy(np.ascontiguousarray(pixels)), torch.from_numpy(labels)


class _Refused(pickle.UnpicklingError):
    """The file names a global outside the allow-list."""


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers; any other global (os.system, eval, ...) is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise _Refused(f"refusing to load the global {module}.{name}: only numpy arrays are allowed")


def read_python(path: Path) -> tuple[Tensor, Tensor]:
    """(pixels, labels) from one python-version batch, read without executing anything in the file."""
    raw = _read_bytes(path)
    try:
        batch = _ArraysOnly(io.BytesIO(raw), encoding="bytes").load()
    except _Refused as exc:
        raise BregzooError(f"CIFAR-10 file '{path}' is not a plain CIFAR batch ({exc}); delete it and re-extract") from None
    except Exception as exc:  # EOFError, ValueError, ...: truncated or not a pickle at all
        raise BregzooError(
            f"CIFAR-10 file '{path}' could not be read ({type(exc).__name__}: {exc}); it is truncated or corrupt: "
            f"re-download it, or use the binary version {BIN_URL}"
        ) from None
    if not isinstance(batch, dict):
        raise BregzooError(f"CIFAR-10 file '{path}' holds a {type(batch).__name__}, expected a dict batch")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise BregzooError(f"CIFAR-10 file '{path}' lacks the 'data' array or the 'labels' list")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise BregzooError(
            f"CIFAR-10 file '{path}' has data of shape {data.shape} and dtype {data.dtype}; "
            "expected (N, 3072) uint8 rows, i.e. 3x32x32 images: is this CIFAR-10?"
        )
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise BregzooError(f"CIFAR-10 file '{path}' has {data.shape[0]} images but {labels.size} labels")
    _check_labels(labels, path)
    pixels = rearrange(data, "n (c h w) -> n c h w", c=3, h=32, w=32)
    return torch.from_numpy(np.ascontiguousarray(pixels)), torch.from_numpy(labels)


def read_split(folder: Path, fmt: str, split: str) -> tuple[Tensor, Tensor]:
    """All batches of ``split`` ('train' or 'test'), concatenated."""
    reader = read_binary if fmt == "binary" else read_python
    parts = [reader(folder / name) for name in FILES[(fmt, split)]]
    return torch.cat([p for p, _ in parts]), torch.cat([lab for _, lab in parts])


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise BregzooError(
            f"CIFAR-10 file '{path}' is missing; the folder is incomplete: download {BIN_URL} and extract it again"
        )
    return path.read_bytes()


def _check_labels(labels: np.ndarray, path: Path) -> None:
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise BregzooError(f"CIFAR-10 file '{path}' has labels outside 0..9; it is corrupt: extract it again")
