"""Atomic file writes: every checkpoint and result file goes through here.

A crash (or a kill) mid-write must never leave a half-written file under the final name: each write
goes to a temporary file in the same directory, is fsync'ed, then renamed over the target with
``os.replace`` (atomic on POSIX when source and target share a file system).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from torch import Tensor

from bregzoo.errors import BregzooError


def _fsync_dir(path: Path) -> None:
    """Persist a rename: fsync the directory that holds it (a no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, before any threads write files
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same dir, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results get the usual open() permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (NaN/inf are refused: they are not JSON)."""
    return write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line and fsync: a crash loses at most the line being written (jsonl logs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")
        f.flush()
        os.fsync(f.fileno())


def usual_permissions(root: str | os.PathLike) -> None:
    """Give every file under ``root`` the permissions a plain open() would (umask applied): some
    writers, safetensors' own among them, create 0600 files, unlike everything else in a run."""
    for path in Path(root).rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, 0o666 & ~_UMASK)


def save_file(tensors: dict[str, Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Save tensors as safetensors, atomically. Tensors are made contiguous and moved to the CPU."""
    from safetensors.torch import save

    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return write_bytes(path, save(flat, metadata=metadata))


def load_file(path: str | os.PathLike, device: str = "cpu") -> dict[str, Tensor]:
    """Load a safetensors file (never pickle). A missing or corrupt file is a user error."""
    from safetensors.torch import load_file as _load

    try:
        return _load(str(path), device=device)
    except FileNotFoundError:
        raise BregzooError(f"no weights file at {path}") from None
    except Exception as exc:  # safetensors raises its own error types for truncated headers
        raise BregzooError(f"cannot read {path} as safetensors ({type(exc).__name__}: {exc})") from exc


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata stored in a safetensors header."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except FileNotFoundError:
        raise BregzooError(f"no weights file at {path}") from None
    except Exception as exc:
        raise BregzooError(f"cannot read {path} as safetensors ({type(exc).__name__}: {exc})") from exc


def read_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in a safetensors file, from its header alone (no tensor is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except FileNotFoundError:
        raise BregzooError(f"no weights file at {path}") from None
    except Exception as exc:
        raise BregzooError(f"cannot read {path} as safetensors ({type(exc).__name__}: {exc})") from exc


def fsync_tree(path: str | os.PathLike) -> None:
    """fsync every file under ``path`` (before renaming a directory into place)."""
    for f in Path(path).rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())


def replace_dir(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Move the complete directory ``tmp`` to ``path`` (replacing it), after fsync'ing its files."""
    tmp, path = Path(tmp), Path(path)
    fsync_tree(tmp)
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Fill a directory under a temporary name, then rename it into place in one step.

    Readers only ever see a complete directory. An existing ``path`` is replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_device(spec: str) -> str:
    """A torch device string that exists on this machine, or a user error saying what does.

    >>> check_device("cpu")
    'cpu'
    """
    import torch

    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        raise BregzooError(f"--device {spec!r} is not a device; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise BregzooError(f"--device {spec}: this machine has {count} CUDA device(s)"
                               f"{'' if count == 0 else f' (cuda:0 to cuda:{count - 1})'}; use --device cpu")
    elif device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BregzooError(f"--device {spec}: MPS is not available on this machine; use --device cpu")
    return spec
