"""One training per run directory: an exclusive lock on ``<out>/.lock`` that holds its owner's pid.

The lock is the operating system's (``fcntl.flock``), so the kernel drops it when its process dies, however it
dies: a lock file left by a killed run holds a dead pid and no lock, and the next run takes it over. The pid is
only for the message that names the owner. Neither accelerate nor filelock (which torch pulls in, but bregzoo
does not depend on) says who holds a lock, and filelock's API changed across major versions; this is 60 lines.

Where the file system has no ``flock`` (some network file systems), the pid decides: a live process other
than this one holds the directory, a dead one does not. On a platform without ``fcntl`` there is no lock.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from bregzoo.errors import BregzooError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

NAME = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


class RunLock:
    """``with RunLock(run_dir, "--out"):`` - the directory is this process's until the block ends.

    A directory held by a live process is a BregzooError naming its pid. ``taken_over`` is the pid of a
    dead owner whose lock file was reused (None when there was none).
    """

    def __init__(self, root: str | os.PathLike, option: str = "--out") -> None:
        self.path, self.option = Path(root) / NAME, option
        self.fd: int | None = None
        self.taken_over: int | None = None

    def acquire(self) -> "RunLock":
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            owner = _read_pid(fd)
            try:
                held = not self._flock(fd, owner)
            except BaseException:
                os.close(fd)
                raise
            if held:
                os.close(fd)
                raise BregzooError(
                    f"{self.option} {self.path.parent} is in use by another bregzoo train (pid {owner or '?'}); "
                    "wait for it to finish or stop it, or choose another directory")
            try:  # the holder before us may have removed the file after we opened it: lock the file now there
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.taken_over = owner if owner not in (None, os.getpid()) else None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self.fd = fd
        return self

    def _flock(self, fd: int, owner: int | None) -> bool:
        """Whether this process now holds ``fd``'s lock."""
        if fcntl is None:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            return owner is None or owner == os.getpid() or not _alive(owner)

    def release(self) -> None:
        """Remove the lock file and drop the lock (in that order: a waiting process re-checks the file)."""
        if self.fd is None:
            return
        try:
            if os.path.samestat(os.fstat(self.fd), os.stat(self.path)):
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)  # closing drops the flock
        self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
