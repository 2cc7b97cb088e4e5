"""Add or remove a document, or rebuild: the one way the corpus and its index change.

The CLI and the service both change documents through here. Each change:

1. holds the store's change lock, so changes from any process (the CLI, every server
   worker) happen one at a time;
2. starts from the index version ``CURRENT`` names and the catalog on disk, never from a
   stale copy (the caller's loaded snapshot is reused only when it is that version);
3. writes everything new beside the live files: the index version, the document's source,
   the catalog. A full disk fails here, and nothing live has changed;
4. switches them in by renames: the source, the catalog, then ``CURRENT``.

With Milvus the index is written at step 3, after the corpus files are staged, and every
replica sees it at once (Milvus has no transactions to hold it back); the renames follow.

The corpus is the truth and the index is derived from it, so the corpus moves first. A
crash after the catalog and before ``CURRENT`` leaves the previous index serving beside a
catalog that is ahead of it: the next start finds that the index no longer matches the
corpus and rebuilds it. A crash after the source alone leaves a file that no catalog entry
names: nothing reads it, and the next upload with that id replaces it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from index.documents import Document, DocumentMeta, catalog_bytes, load_catalog
from index.errors import ConflictError, IndexWriteError, NotFoundError
from index.files import StagedFile
from index.pipeline import Components, ensure_snapshot, open_snapshot
from index.searchable import Searchable
from index.stores import Pending


@dataclass(frozen=True)
class Saved:
    """An index version as saved, and the index."""

    version: str | None
    snapshot: Searchable


class DocumentChanges:
    """Changes to one corpus and its index; see the module docstring for the guarantees."""

    def __init__(self, parts: Components) -> None:
        self.parts = parts

    def add(
        self, document: Document, source: bytes, *, replace: bool = False, held: Saved | None = None
    ) -> Saved:
        """Index ``document``, store ``source`` (its file's bytes) where ``meta.source``
        says, and list it in the catalog.

        Args:
            document: the parsed document.
            source: the bytes of its source file.
            replace: replace a document with the same id instead of refusing.
            held: the version the caller serves, reused if it is still current.

        Raises:
            ConflictError: the id exists and ``replace`` is False.
            IndexWriteError: something could not be written; nothing changed.
        """
        parts = self.parts
        with parts.store.locked():
            base = self._latest(held)
            catalog = load_catalog(parts.settings.catalog_path)
            listed = {entry.id for entry in catalog} | base.snapshot.catalog.keys()
            if document.id in listed and not replace:
                raise ConflictError(
                    f"document {document.id!r} exists; remove it first, or replace it with "
                    "`python -m index add --replace`"
                )
            return self._commit(
                lambda: parts.store.prepare_add(
                    base.snapshot, document, embedder=parts.embedder, tokenizer=parts.tokenizer
                ),
                catalog=[*(e for e in catalog if e.id != document.id), document.meta],
                source=(parts.settings.corpus_dir / document.meta.source, source),
            )

    def remove(self, doc_id: str, *, held: Saved | None = None) -> Saved:
        """Take a document out of the index and the catalog (its source file stays).

        Raises:
            NotFoundError: the index has no such document.
            IndexWriteError: something could not be written; nothing changed.
        """
        parts = self.parts
        with parts.store.locked():
            base = self._latest(held)
            if doc_id not in base.snapshot.catalog:
                raise NotFoundError(f"document {doc_id!r} is not in the index")
            catalog = load_catalog(parts.settings.catalog_path)
            return self._commit(
                lambda: parts.store.prepare_remove(base.snapshot, doc_id, embedder=parts.embedder),
                catalog=[e for e in catalog if e.id != doc_id],
            )

    def rebuild(self, *, show_progress: bool = False) -> Saved:
        """Re-read the whole corpus and index it from scratch.

        Raises:
            CorpusError: the corpus cannot be read; nothing changed.
            IndexWriteError: the index could not be written; nothing changed.
        """
        snapshot, _ = ensure_snapshot(self.parts, force=True, show_progress=show_progress)
        return Saved(self.parts.store.loaded_version, snapshot)

    def _latest(self, held: Saved | None) -> Saved:
        """The version the store names now (``held`` if it is that one), opened."""
        store = self.parts.store
        if held is not None and held.version == store.version():
            return held
        snapshot = open_snapshot(self.parts)
        return Saved(store.loaded_version, snapshot)

    def _commit(
        self,
        prepare: Callable[[], Pending],
        *,
        catalog: list[DocumentMeta],
        source: tuple[Path, bytes] | None = None,
    ) -> Saved:
        """Write everything beside the live files, then rename: source, catalog, index.

        The corpus files are staged first: what can fail here fails before the index
        changes (a Milvus write is seen by every replica at once and cannot be taken back).
        """
        staged: list[StagedFile] = []
        pending: Pending | None = None
        try:
            if source is not None:
                staged.append(StagedFile(*source))
            staged.append(StagedFile(self.parts.settings.catalog_path, catalog_bytes(catalog)))
            pending = prepare()
        except BaseException as exc:
            for file in staged:
                file.discard()
            if isinstance(exc, OSError):
                raise IndexWriteError.from_os_error(exc) from exc
            raise
        for file in staged:
            file.commit()
        return Saved(pending.commit(), pending.index)
