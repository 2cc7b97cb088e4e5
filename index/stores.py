"""Where the index lives: this machine's snapshots (the default) or a shared Milvus.

Both stores are built, opened, changed and followed the same way, so the pipeline, the
CLI, the document changes and the service do not know which one they use. The retriever
searches what ``open`` returns (a ``Searchable``) and ranks alike over either.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from index.build import build_snapshot, check_compatible, with_document, without_document
from index.documents import Document
from index.embedding import Embedder
from index.lexical import Tokenizer
from index.searchable import Searchable
from index.settings import Settings
from index.snapshot import Manifest, Snapshot
from index.store import IndexStore, PendingVersion


class Pending(Protocol):
    """A change written beside what is served; ``commit`` makes it current."""

    @property
    def index(self) -> Searchable:
        """The index as it is with the change."""
        ...

    def commit(self) -> str | None:
        """Make the change current; returns the new version."""
        ...

    def discard(self) -> None: ...


class Store(Protocol):
    """An index's home: how it is built, opened, changed and followed."""

    kind: str
    """``local`` or ``milvus``: what ``/readyz`` reports."""

    @property
    def loaded_version(self) -> str | None:
        """The version this process last opened or made current."""
        ...

    def locked(self) -> AbstractContextManager[None]:
        """Changes take turns while this is held (across this machine's processes)."""
        ...

    def version(self) -> str | None:
        """Moves whenever the index changes, from any process (followers poll it); None
        when there is no index."""
        ...

    def current_manifest(self) -> Manifest | None:
        """What the current index was built from (None: no index)."""
        ...

    def open(self, *, embedder: Embedder) -> Searchable:
        """The current index, refused (``IndexIntegrityError``) if another model built it."""
        ...

    def build(
        self,
        documents: list[Document],
        *,
        embedder: Embedder,
        tokenizer: Tokenizer,
        show_progress: bool = False,
    ) -> tuple[Searchable, str | None]:
        """Index ``documents`` from scratch and make that current; returns it and its version."""
        ...

    def prepare_add(
        self, base: Searchable, document: Document, *, embedder: Embedder, tokenizer: Tokenizer
    ) -> Pending:
        """``base`` (the current index) with ``document`` added or replaced."""
        ...

    def prepare_remove(self, base: Searchable, doc_id: str, *, embedder: Embedder) -> Pending:
        """``base`` without ``doc_id``."""
        ...


@dataclass
class _LocalPending:
    index: Snapshot
    version: PendingVersion

    def commit(self) -> str | None:
        return self.version.commit()

    def discard(self) -> None:
        self.version.discard()


class LocalStore:
    """Versioned snapshot folders under ``data_dir/index`` (``index/store.py``)."""

    kind = "local"

    def __init__(self, settings: Settings) -> None:
        self.versions = IndexStore(settings.index_root)
        self.settings = settings

    @property
    def loaded_version(self) -> str | None:
        return self.versions.loaded_version

    def locked(self) -> AbstractContextManager[None]:
        return self.versions.locked()

    def version(self) -> str | None:
        return self.versions.current_version()

    def current_manifest(self) -> Manifest | None:
        return self.versions.current_manifest()

    def open(self, *, embedder: Embedder, mmap: bool | None = None) -> Snapshot:
        """Load the saved index (memory-mapped unless settings or ``mmap`` say otherwise)."""
        snapshot = self.versions.load(mmap=self.settings.mmap_index if mmap is None else mmap)
        check_compatible(snapshot.manifest, embedder=embedder)
        return snapshot

    def build(
        self,
        documents: list[Document],
        *,
        embedder: Embedder,
        tokenizer: Tokenizer,
        show_progress: bool = False,
    ) -> tuple[Snapshot, str | None]:
        snapshot = build_snapshot(
            documents,
            embedder=embedder,
            tokenizer=tokenizer,
            settings=self.settings,
            show_progress=show_progress,
        )
        return snapshot, self.versions.save(snapshot)

    def prepare_add(
        self, base: Searchable, document: Document, *, embedder: Embedder, tokenizer: Tokenizer
    ) -> _LocalPending:
        updated = with_document(_local(base), document, embedder=embedder, tokenizer=tokenizer)
        return _LocalPending(updated, self.versions.prepare(updated))

    def prepare_remove(self, base: Searchable, doc_id: str, *, embedder: Embedder) -> _LocalPending:
        updated = without_document(_local(base), doc_id)
        return _LocalPending(updated, self.versions.prepare(updated))


def _local(index: Searchable) -> Snapshot:
    if not isinstance(index, Snapshot):
        raise TypeError("a local store changes local snapshots only")
    return index


def open_store(settings: Settings) -> Store:
    """The store the settings name (Milvus is imported only when chosen)."""
    if settings.store == "milvus":
        from index.milvus.store import MilvusStore

        return MilvusStore(settings)
    return LocalStore(settings)
