"""Persist snapshots as versioned folders switched by an atomic ``CURRENT`` pointer.

A build writes a complete new version folder (every file checksummed in its manifest and
flushed to disk), then replaces ``CURRENT`` with one rename. A crash or a full disk
mid-write leaves the previous version serving. If the version ``CURRENT`` names is corrupt
(a bad checksum, a missing or unreadable file), loading falls back to the newest older
version that verifies and logs a warning; with none, it refuses with a message that says
what to do.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from index.chunking import Chunk
from index.dense import DenseIndex
from index.documents import Document, DocumentMeta, sha256_file
from index.errors import IndexFormatError, IndexIntegrityError
from index.lexical import LexicalIndex
from index.snapshot import FORMAT_VERSION, Manifest, Snapshot

log = logging.getLogger(__name__)

POINTER = "CURRENT"
VERSIONS = "versions"
KEEP_VERSIONS = 3
REBUILD_HINT = "rebuild it with `make index` (or `python -m index build --force`)"
# What ``save`` names a version: a UTC timestamp and the corpus hash. Anything else in
# ``versions/`` (a ``.staging-*`` folder a crash left behind, stray files) is ignored.
_VERSION_NAME = re.compile(r"^\d{8}T\d{12}-[0-9a-f]{8}$")
# A staging folder untouched this long was left by a crashed build, not a running one.
STALE_STAGING_S = 6 * 3600


class IndexWriteError(IndexIntegrityError):
    """The index (or the catalog with it) could not be written: a full or read-only disk.

    Nothing was switched: the previous version is still current and still served.
    """


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
        _fsync_dir(self.path.parent)

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


@dataclass
class PendingVersion:
    """A complete version folder on disk that is not current yet."""

    store: IndexStore
    name: str
    pointer: StagedFile

    def commit(self) -> str:
        """Make this version current (one rename) and prune old ones; returns its name."""
        self.pointer.commit()
        self.store.loaded_version = self.name
        self.store._prune(keep=self.name)
        return self.name

    def discard(self) -> None:
        self.pointer.discard()
        shutil.rmtree(self.store.root / VERSIONS / self.name, ignore_errors=True)


def _fsync_dir(folder: Path) -> None:
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


def _files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != "manifest.json":
            yield path


class IndexStore:
    """Reads and writes snapshots under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.loaded_version: str | None = None
        """The version this store last loaded or made current (what a process serves)."""

    def current_version(self) -> str | None:
        """The version ``CURRENT`` names (None without a pointer); it may not be usable."""
        pointer = self.root / POINTER
        if not pointer.exists():
            return None
        try:
            return pointer.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return ""  # unreadable: names no version, so loading falls back or refuses

    def current_manifest(self) -> Manifest | None:
        """The manifest of the version ``load`` would start from (None if no index).

        That is ``CURRENT``'s, or, if it has no readable manifest, the newest older
        version's that has one (checksums are verified by ``load``, not here).

        Raises:
            IndexIntegrityError: ``CURRENT`` exists but no version has a usable manifest.
        """
        if self.current_version() is None:
            return None
        first: IndexIntegrityError | None = None
        for name in self._candidates():
            try:
                return self._read_manifest(self.root / VERSIONS / name)
            except IndexIntegrityError as exc:
                first = first or exc
        raise first or self._unusable_pointer()

    def save(self, snapshot: Snapshot) -> str:
        """Write ``snapshot`` as a new version and make it current.

        Returns:
            The new version's name.

        Raises:
            OSError: the version could not be written (e.g. a full disk); the previous
                version is still current and nothing of the new one is left behind.
        """
        return self.prepare(snapshot).commit()

    def prepare(self, snapshot: Snapshot) -> PendingVersion:
        """Write ``snapshot`` as a complete new version (and its pointer), not yet current.

        ``commit()`` the result to switch to it with one rename, or ``discard()`` it.
        """
        versions = self.root / VERSIONS
        versions.mkdir(parents=True, exist_ok=True)
        self._remove_stale_staging()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"{stamp}-{snapshot.manifest.corpus_hash[:8]}"
        staging = versions / f".staging-{name}"
        try:
            self._write(snapshot, staging)
            staging.rename(versions / name)
            _fsync_dir(versions)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            pointer = StagedFile(self.root / POINTER, f"{name}\n".encode())
        except BaseException:
            shutil.rmtree(versions / name, ignore_errors=True)
            raise
        return PendingVersion(store=self, name=name, pointer=pointer)

    def load(self, *, mmap: bool = False) -> Snapshot:
        """Load and verify the current version, or the newest older one that verifies.

        A fallback is logged as a warning naming both versions and what is wrong.

        Raises:
            IndexIntegrityError: no index, or no version that verifies (the message is
                about ``CURRENT``'s version: a checksum mismatch, a missing file, an
                unknown format).
        """
        current = self.current_version()
        if current is None:
            raise IndexIntegrityError(f"no index under {self.root}; {REBUILD_HINT}")
        first: IndexIntegrityError | None = None
        for name in self._candidates():
            try:
                snapshot = self._load_version(name, mmap=mmap)
            except IndexIntegrityError as exc:
                first = first or exc
                continue
            if name != current:
                log.warning(
                    "index version %s is unusable (%s); serving the previous version %s",
                    current or "(unreadable CURRENT)",
                    first or "no such version folder",
                    name,
                    extra={"unusable": current, "serving": name},
                )
            self.loaded_version = name
            return snapshot
        raise first or self._unusable_pointer()

    # ---- versions -----------------------------------------------------------------------

    def versions(self) -> list[str]:
        """Complete version folders, newest first (staging folders and strays excluded)."""
        folder = self.root / VERSIONS
        if not folder.is_dir():
            return []
        names = (p.name for p in folder.iterdir() if p.is_dir())
        return sorted((n for n in names if _VERSION_NAME.fullmatch(n)), reverse=True)

    def _candidates(self) -> Iterator[str]:
        """``CURRENT``'s version first (if it names a real folder), then the older ones."""
        current = self.current_version()
        known = self.versions()
        if current in known:
            yield current
        for name in known:
            if name != current and (current not in known or name < current):
                yield name

    def _load_version(self, version: str, *, mmap: bool) -> Snapshot:
        folder = self.root / VERSIONS / version
        manifest = self._read_manifest(folder)
        self._verify(folder, manifest)
        try:
            return self._read(folder, manifest, mmap=mmap)
        except IndexIntegrityError:
            raise
        except Exception as exc:  # any parse failure of a checksummed file is corruption
            raise IndexIntegrityError(
                f"index version {version} cannot be read ({exc}); {REBUILD_HINT}"
            ) from exc

    def _unusable_pointer(self) -> IndexIntegrityError:
        return IndexIntegrityError(
            f"{self.root / POINTER} names no usable index version "
            f"({self.current_version()!r}); {REBUILD_HINT}"
        )

    def _remove_stale_staging(self) -> None:
        """Delete staging folders a crashed build left behind (not a running build's)."""
        cutoff = time.time() - STALE_STAGING_S
        for path in (self.root / VERSIONS).glob(".staging-*"):
            try:
                stale = path.stat().st_mtime < cutoff
            except OSError:
                continue
            if stale:
                shutil.rmtree(path, ignore_errors=True)

    # ---- writing ------------------------------------------------------------------------

    def _write(self, snapshot: Snapshot, folder: Path) -> None:
        folder.mkdir(parents=True)
        documents = [
            {"meta": doc.meta.to_dict(), "text": doc.text} for doc in snapshot.documents.values()
        ]
        (folder / "documents.json").write_text(
            json.dumps(documents, ensure_ascii=False), encoding="utf-8"
        )
        with (folder / "chunks.jsonl").open("w", encoding="utf-8") as handle:
            for row, chunk in snapshot.chunks.items():
                record = {"row": row, **asdict(chunk), "tokens": snapshot.tokens[row]}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        np.save(folder / "lexical_rows.npy", snapshot.lexical_rows)
        snapshot.dense.save(folder / "dense.faiss")
        snapshot.lexical.save(folder / "bm25")
        files = {str(p.relative_to(folder)): sha256_file(p) for p in _files(folder)}
        manifest = replace(snapshot.manifest, files=files)
        (folder / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
        # Flushed before the folder is renamed into place: after a power cut, a version
        # that CURRENT names has all its bytes (or fails its checksums and is skipped).
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                with path.open("rb") as handle:
                    os.fsync(handle.fileno())

    def _prune(self, *, keep: str) -> None:
        """Keep the newest versions (and ``keep``); older ones are deleted."""
        for stale in self.versions()[KEEP_VERSIONS:]:
            if stale != keep:
                shutil.rmtree(self.root / VERSIONS / stale, ignore_errors=True)

    # ---- reading ------------------------------------------------------------------------

    @staticmethod
    def _read_manifest(folder: Path) -> Manifest:
        try:
            raw: dict[str, Any] = json.loads((folder / "manifest.json").read_text("utf-8"))
            manifest = Manifest.from_dict(raw)
        except FileNotFoundError as exc:
            raise IndexIntegrityError(
                f"index version {folder.name} has no manifest; {REBUILD_HINT}"
            ) from exc
        except (ValueError, TypeError) as exc:
            raise IndexIntegrityError(
                f"index manifest in {folder.name} is corrupt ({exc}); {REBUILD_HINT}"
            ) from exc
        if manifest.format_version != FORMAT_VERSION:
            raise IndexFormatError(
                f"index format {manifest.format_version} is not {FORMAT_VERSION}; {REBUILD_HINT}"
            )
        return manifest

    @staticmethod
    def _verify(folder: Path, manifest: Manifest) -> None:
        for name, expected in manifest.files.items():
            path = folder / name
            if not path.is_file():
                raise IndexIntegrityError(f"index file {name} is missing; {REBUILD_HINT}")
            if sha256_file(path) != expected:
                raise IndexIntegrityError(
                    f"index file {name} is corrupt (checksum mismatch); {REBUILD_HINT}"
                )

    @staticmethod
    def _read(folder: Path, manifest: Manifest, *, mmap: bool) -> Snapshot:
        documents = {
            entry["meta"]["id"]: Document(meta=DocumentMeta(**entry["meta"]), text=entry["text"])
            for entry in json.loads((folder / "documents.json").read_text("utf-8"))
        }
        chunks: dict[int, Chunk] = {}
        tokens: dict[int, list[str]] = {}
        with (folder / "chunks.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                row = int(record.pop("row"))
                tokens[row] = record.pop("tokens")
                record["section"] = tuple(record["section"])
                chunks[row] = Chunk(**record)
        lexical_rows = np.load(folder / "lexical_rows.npy")
        dense = DenseIndex.load(folder / "dense.faiss", manifest.index_type, mmap=mmap)  # type: ignore[arg-type]
        lexical = LexicalIndex.load(folder / "bm25", size=len(lexical_rows), mmap=mmap)
        snapshot = Snapshot(
            manifest=manifest,
            documents=documents,
            chunks=chunks,
            tokens=tokens,
            dense=dense,
            lexical=lexical,
            lexical_rows=lexical_rows,
        )
        if dense.size != snapshot.vector_count or len(lexical_rows) != len(chunks):
            raise IndexIntegrityError(
                f"index parts disagree ({dense.size} vectors, {len(chunks)} passages); "
                + REBUILD_HINT
            )
        return snapshot
