"""Persist snapshots as versioned folders switched by an atomic ``CURRENT`` pointer.

A version holds its main segment's files and, under ``delta/`` (with the BM25 segments),
what was added since. An add leaves the main segment untouched, so its files are reused
from the version that has them instead of being written and checksummed again.

A build writes a complete new version folder (every file checksummed in its manifest and
flushed to disk), then replaces ``CURRENT`` with one rename. A crash or a full disk
mid-write leaves the previous version serving. If the version ``CURRENT`` names is corrupt
(a bad checksum, a missing or unreadable file), loading falls back to the newest older
version that verifies and logs a warning; with none, it refuses with a message that says
what to do.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from index.chunking import Chunk
from index.dense import DenseIndex
from index.documents import Document, DocumentMeta
from index.errors import IndexFormatError, IndexIntegrityError, IndexWriteError
from index.files import StagedFile, file_lock, fsync_dir, sha256_file
from index.lexical import SEGMENTS_FILE, LexicalIndex
from index.snapshot import FORMAT_VERSION, Manifest, Snapshot

log = logging.getLogger(__name__)

POINTER = "CURRENT"
LOCK = "changes.lock"
VERSIONS = "versions"
DELTA = "delta"
MAIN_FILES = frozenset({"documents.json", "chunks.jsonl", "dense.faiss"})
# Main-segment files at least this big (together) are hard-linked into the next version
# rather than copied: 64 MiB is ~4,000 passages.
SHARE_MIN_BYTES = 64 * 1024 * 1024
KEEP_VERSIONS = 3
REBUILD_HINT = "rebuild it with `make index` (or `python -m index build --force`)"
# What ``save`` names a version: a UTC timestamp and the corpus hash. Anything else in
# ``versions/`` (a ``.staging-*`` folder a crash left behind, stray files) is ignored.
_VERSION_NAME = re.compile(r"^\d{8}T\d{12}-[0-9a-f]{8}$")
# A staging folder untouched this long was left by a crashed build, not a running one.
STALE_STAGING_S = 6 * 3600


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


def _is_main_file(name: str) -> bool:
    """Whether a version's file belongs to its main segment (unchanged by an add)."""
    return name in MAIN_FILES or (name.startswith("bm25/") and name != f"bm25/{SEGMENTS_FILE}")


def _hard_link(source: Path, target: Path) -> bool:
    """Link ``target`` to ``source``; False where the file system cannot (then copy)."""
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            return False
        raise
    return True


def _write_documents(path: Path, snapshot: Snapshot, doc_ids: Iterable[str]) -> None:
    chosen = (snapshot.documents[doc_id] for doc_id in doc_ids)
    documents = [{"meta": doc.meta.to_dict(), "text": doc.text} for doc in chosen]
    path.write_text(json.dumps(documents, ensure_ascii=False), encoding="utf-8")


def _write_chunks(path: Path, snapshot: Snapshot, rows: Iterable[int]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            record = {"row": row, **asdict(snapshot.chunks[row]), "tokens": snapshot.tokens[row]}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


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

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the change lock (a file lock beside ``CURRENT``): whoever writes a version,
        in any process, holds it, so versions are made one at a time."""
        return file_lock(self.root / LOCK)

    def save(self, snapshot: Snapshot) -> str:
        """Write ``snapshot`` as a new version and make it current (under ``locked``).

        Returns:
            The new version's name.

        Raises:
            IndexWriteError: the version could not be written (e.g. a full disk); the
                previous version is still current and nothing of the new one is left behind.
        """
        return self.prepare(snapshot).commit()

    def prepare(self, snapshot: Snapshot) -> PendingVersion:
        """Write ``snapshot`` as a complete new version (and its pointer), not yet current.

        ``commit()`` the result to switch to it with one rename, or ``discard()`` it.

        Raises:
            IndexWriteError: as for ``save``.
        """
        try:
            return self._prepare(snapshot)
        except OSError as exc:
            raise IndexWriteError.from_os_error(exc) from exc

    def _prepare(self, snapshot: Snapshot) -> PendingVersion:
        versions = self.root / VERSIONS
        versions.mkdir(parents=True, exist_ok=True)
        self._remove_stale_staging()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"{stamp}-{snapshot.manifest.corpus_hash[:8]}"
        staging = versions / f".staging-{name}"
        try:
            self._write(snapshot, staging)
            staging.rename(versions / name)
            fsync_dir(versions)
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
        """Write a version: the main segment's files (or reuse them, see ``_reuse_main``),
        then what was added since (``delta/``, the BM25 segments, the row map)."""
        folder.mkdir(parents=True)
        (folder / DELTA).mkdir()
        # Only the delta is walked on an add: the main segment is touched only when written.
        delta_rows = snapshot.delta_rows.tolist()
        delta_docs = list(dict.fromkeys(snapshot.chunks[row].doc_id for row in delta_rows))
        reused, linked = self._reuse_main(snapshot.manifest.main_segment, folder)
        if not reused:
            added_rows, added_docs = set(delta_rows), set(delta_docs)
            main_docs = (d for d in snapshot.documents if d not in added_docs)
            _write_documents(folder / "documents.json", snapshot, main_docs)
            main_rows = (r for r in snapshot.chunks if r not in added_rows)
            _write_chunks(folder / "chunks.jsonl", snapshot, main_rows)
        _write_documents(folder / DELTA / "documents.json", snapshot, delta_docs)
        _write_chunks(folder / DELTA / "chunks.jsonl", snapshot, delta_rows)
        np.save(folder / "lexical_rows.npy", snapshot.lexical_rows)
        snapshot.dense.save(folder / "dense.faiss", folder / DELTA / "dense.faiss", main=not reused)
        snapshot.lexical.save(folder / "bm25", main=not reused)
        files = {}
        for path in _files(folder):
            name = path.relative_to(folder).as_posix()
            files[name] = reused.get(name) or sha256_file(path)
        manifest = replace(snapshot.manifest, files=files)
        (folder / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
        # Flushed before the folder is renamed into place: after a power cut, a version
        # that CURRENT names has all its bytes (or fails its checksums and is skipped).
        # A hard link's bytes were flushed when its first name was written.
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.relative_to(folder).as_posix() not in linked:
                with path.open("rb") as handle:
                    os.fsync(handle.fileno())

    def _reuse_main(self, main_segment: str, folder: Path) -> tuple[dict[str, str], set[str]]:
        """Put the main segment's files into ``folder`` from a version that has them.

        Versions made from the same main segment (by adds) hold byte-identical main files,
        so an add neither serialises nor checksums them again: they are hard-linked when
        they are big (sharing them: a damaged shared file damages every version holding
        it, and the fix is a rebuild), copied when small (every version stands alone).

        Returns:
            The reused files' checksums by name (empty: none, write them) and the names
            that were hard-linked.
        """
        for name in self.versions():
            source = self.root / VERSIONS / name
            try:
                manifest = self._read_manifest(source)
            except IndexIntegrityError:
                continue
            if manifest.main_segment != main_segment:
                continue
            main = {n: c for n, c in manifest.files.items() if _is_main_file(n)}
            paths = {n: source / n for n in main}
            if not main or not all(p.is_file() for p in paths.values()):
                continue
            share = sum(p.stat().st_size for p in paths.values()) >= SHARE_MIN_BYTES
            linked: set[str] = set()
            for n, path in paths.items():
                target = folder / n
                target.parent.mkdir(parents=True, exist_ok=True)
                if share and _hard_link(path, target):
                    linked.add(n)
                else:
                    shutil.copyfile(path, target)
            return main, linked
        return {}, set()

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
            if isinstance(raw, dict) and raw.get("format_version") != FORMAT_VERSION:
                raise IndexFormatError(
                    f"index format {raw.get('format_version')} is not {FORMAT_VERSION}; "
                    + REBUILD_HINT
                )
            manifest = Manifest.from_dict(raw)
        except FileNotFoundError as exc:
            raise IndexIntegrityError(
                f"index version {folder.name} has no manifest; {REBUILD_HINT}"
            ) from exc
        except (ValueError, TypeError) as exc:
            raise IndexIntegrityError(
                f"index manifest in {folder.name} is corrupt ({exc}); {REBUILD_HINT}"
            ) from exc
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
        documents: dict[str, Document] = {}
        chunks: dict[int, Chunk] = {}
        tokens: dict[int, list[str]] = {}
        for part in (folder, folder / DELTA):  # the main segment, then what was added since
            for entry in json.loads((part / "documents.json").read_text("utf-8")):
                meta = DocumentMeta(**entry["meta"])
                documents[meta.id] = Document(meta=meta, text=entry["text"])
            with (part / "chunks.jsonl").open(encoding="utf-8") as handle:
                for line in handle:
                    record = json.loads(line)
                    row = int(record.pop("row"))
                    tokens[row] = record.pop("tokens")
                    record["section"] = tuple(record["section"])
                    chunks[row] = Chunk(**record)
        lexical_rows = np.load(folder / "lexical_rows.npy")
        delta_dense = f"{DELTA}/dense.faiss"
        dense = DenseIndex.load(
            folder / "dense.faiss",
            manifest.index_type,  # type: ignore[arg-type]
            mmap=mmap,
            delta_path=folder / delta_dense if delta_dense in manifest.files else None,
        )
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
