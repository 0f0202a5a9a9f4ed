"""The data cache's root and its advisory inter-process locks (downloads, raw folders, processed files).

Several processes (a sweep's trials, parallel `xlrec data prepare` runs) may fill one
cache at the same time. Writes are already atomic (unique temp file + rename), so a
reader never sees half a file; the lock only makes the others *wait* for the first one
instead of downloading or parsing the same thing N times.

`fcntl.flock` is used because the lock dies with its process (a crashed or killed run
never leaves a stale lock behind, unlike a lock *file's existence*). Lock files live in
``<cache>/locks/`` so the data folders hold only data; they are empty and never deleted
(deleting a lock file that another process is waiting on would let two holders in).
Holding a lock also makes it safe to delete the temp files a killed holder left behind
(`remove_stale`): nobody else may be writing them.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from xlrec.errors import DataError

try:
    import fcntl
except ImportError:  # not POSIX: no inter-process lock; atomic renames still keep files whole
    fcntl = None  # type: ignore[assignment]


def data_dir() -> Path:
    """Root of xlrec's data cache: ``$XLREC_DATA_DIR`` or ``~/.cache/xlrec``."""
    return Path(os.environ.get("XLREC_DATA_DIR") or Path.home() / ".cache" / "xlrec")


def lock_path(target: Path) -> Path:
    """The lock file guarding `target`: ``<cache>/locks/<name>-<hash of its absolute path>.lock``."""
    digest = hashlib.sha256(str(Path(target).absolute()).encode()).hexdigest()[:12]
    return data_dir() / "locks" / f"{Path(target).name}-{digest}.lock"


def lock(target: Path, what: str, stream: TextIO | None = None):
    """Hold the cache's inter-process lock guarding `target` (a context manager); see `locked`."""
    return locked(lock_path(target), what, stream)


@contextlib.contextmanager
def locked(path: Path, what: str, stream: TextIO | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed); say once on `stream` if we must wait.

    Locks are per open file, so taking the same lock twice in one process (even in one
    thread) waits forever: callers take each lock once, around the whole step.
    """
    if fcntl is None:
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise DataError(
            f"Cannot create the lock file {path} ({exc}). The data cache must be writable: fix its "
            f"permissions or set XLREC_DATA_DIR to a writable folder."
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"xlrec: waiting for another process {what}.", file=sys.stderr if stream is None else stream)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def remove_stale(folder: Path, prefix: str, suffix: str) -> None:
    """Delete ``<prefix>*<suffix>`` temp files or folders in `folder` left by a killed process.

    Call only while holding the lock that every writer of such files holds; without
    inter-process locks (not POSIX) a live writer cannot be told apart, so nothing is deleted.
    """
    if fcntl is None or not folder.is_dir():
        return
    for path in folder.glob(f"{glob.escape(prefix)}*{glob.escape(suffix)}"):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
