"""Durable file writes: a reader sees the old file or the new one, never half of either.

Used for everything the index and the corpus persist (index versions, ``CURRENT``, the
catalog, uploaded sources), with the lock that makes changes take turns.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


class StagedFile:
    """A file written and flushed beside its target, switched in later by one rename.

    Everything that needs disk space happens here, so a full disk fails before any live
    file changes; ``commit`` only renames.
    """

    def __init__(self, path: Path, data: bytes) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        self.tmp = Path(tmp)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise

    def commit(self) -> None:
        self.tmp.replace(self.path)
        fsync_dir(self.path.parent)

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one rename, flushed to disk."""
    StagedFile(path, data).commit()


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (model weights and index files are large)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing): every process on this
    machine that takes the same lock waits its turn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
