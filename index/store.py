"""Persist snapshots as versioned folders switched by an atomic ``CURRENT`` pointer.

A build writes a complete new version folder (every file checksummed in its manifest),
then replaces ``CURRENT`` with one rename. A crash or a full disk mid-write leaves the
previous version serving; a corrupt or mismatched version is refused with a message
that says what to do.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from index.chunking import Chunk
from index.dense import DenseIndex
from index.documents import Document, DocumentMeta, atomic_write_bytes
from index.errors import IndexIntegrityError
from index.lexical import LexicalIndex
from index.snapshot import FORMAT_VERSION, Manifest, Snapshot

POINTER = "CURRENT"
VERSIONS = "versions"
KEEP_VERSIONS = 3
REBUILD_HINT = "rebuild it with `make index` (or `python -m index build --force`)"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != "manifest.json":
            yield path


class IndexStore:
    """Reads and writes snapshots under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def current_version(self) -> str | None:
        pointer = self.root / POINTER
        return pointer.read_text(encoding="utf-8").strip() if pointer.exists() else None

    def current_manifest(self) -> Manifest | None:
        """The manifest of the active version without loading the indexes (None if none)."""
        version = self.current_version()
        if version is None:
            return None
        return self._read_manifest(self.root / VERSIONS / version)

    def save(self, snapshot: Snapshot) -> str:
        """Write ``snapshot`` as a new version and make it current.

        Returns:
            The new version's name.
        """
        versions = self.root / VERSIONS
        versions.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"{stamp}-{snapshot.manifest.corpus_hash[:8]}"
        staging = versions / f".staging-{name}"
        try:
            self._write(snapshot, staging)
            staging.rename(versions / name)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        atomic_write_bytes(self.root / POINTER, f"{name}\n".encode())
        self._prune(keep=name)
        return name

    def load(self, *, mmap: bool = False) -> Snapshot:
        """Load and verify the current version.

        Raises:
            IndexIntegrityError: no index, a checksum mismatch, a missing file or an
                unknown format.
        """
        version = self.current_version()
        if version is None:
            raise IndexIntegrityError(f"no index under {self.root}; {REBUILD_HINT}")
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
        files = {str(p.relative_to(folder)): _sha256(p) for p in _files(folder)}
        manifest = replace(snapshot.manifest, files=files)
        (folder / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")

    def _prune(self, *, keep: str) -> None:
        versions = sorted(
            (p for p in (self.root / VERSIONS).iterdir() if p.is_dir()), key=lambda p: p.name
        )
        for stale in versions[:-KEEP_VERSIONS]:
            if stale.name != keep:
                shutil.rmtree(stale, ignore_errors=True)

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
            raise IndexIntegrityError(
                f"index format {manifest.format_version} is not {FORMAT_VERSION}; {REBUILD_HINT}"
            )
        return manifest

    @staticmethod
    def _verify(folder: Path, manifest: Manifest) -> None:
        for name, expected in manifest.files.items():
            path = folder / name
            if not path.is_file():
                raise IndexIntegrityError(f"index file {name} is missing; {REBUILD_HINT}")
            if _sha256(path) != expected:
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
