"""What the running service holds: the retriever, and the admin operations that swap it.

Loading happens in a background thread so ``/healthz`` answers at once and ``/readyz``
turns 200 when the index is in memory. Admin changes are serialised by one lock and
build a new snapshot beside the live one; requests never see a half-updated index.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from index.build import build_snapshot, with_document, without_document
from index.documents import (
    Document,
    DocumentMeta,
    atomic_write_bytes,
    extract_text,
    load_catalog,
    load_corpus,
    save_catalog,
    validate_doc_id,
)
from index.embedding import Embedder
from index.errors import ConflictError, IndexNotReadyError, NotFoundError
from index.normalise import normalise
from index.pipeline import Components, ensure_snapshot, load_components, make_retriever
from index.retriever import Retriever
from index.settings import Settings
from index.snapshot import Snapshot

log = logging.getLogger("service.state")


@dataclass(frozen=True, slots=True)
class NewDocument:
    """An uploaded document with its catalog metadata."""

    meta: DocumentMeta
    data: bytes
    suffix: str


class ServiceState:
    """The retriever once ready, plus serialised admin changes."""

    def __init__(self, settings: Settings, *, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self._embedder = embedder
        self._parts: Components | None = None
        self._retriever: Retriever | None = None
        self._admin = threading.Lock()
        self.load_error: str | None = None

    # ---- start-up -----------------------------------------------------------------------

    def load(self) -> None:
        """Load model and index (building the index if missing or stale)."""
        try:
            parts = load_components(self.settings, embedder=self._embedder)
            snapshot, built = ensure_snapshot(parts)
        except Exception as exc:  # surfaced by /readyz and the log, never swallowed
            self.load_error = str(exc)
            log.exception("index failed to load")
            return
        self._parts = parts
        self._retriever = make_retriever(parts, snapshot)
        log.info(
            "index ready",
            extra={
                "documents": len(snapshot.documents),
                "passages": snapshot.manifest.passages,
                "built": built,
            },
        )

    @property
    def ready(self) -> bool:
        return self._retriever is not None

    @property
    def retriever(self) -> Retriever:
        if self._retriever is None:
            detail = f": {self.load_error}" if self.load_error else "; try again shortly"
            raise IndexNotReadyError(f"index not ready{detail}")
        return self._retriever

    @property
    def snapshot(self) -> Snapshot:
        return self.retriever.snapshot

    @property
    def parts(self) -> Components:
        self.retriever  # noqa: B018 - raises if not ready
        assert self._parts is not None  # noqa: S101 - set together with the retriever
        return self._parts

    @property
    def version(self) -> str | None:
        return self.parts.store.current_version() if self.ready else None

    # ---- admin ------------------------------------------------------------------------

    def add_document(self, new: NewDocument) -> Snapshot:
        """Index an uploaded document, persist it, then serve it.

        Raises:
            ConflictError: the id exists already.
            InvalidInputError / UnsupportedMediaError: the file cannot be used.
        """
        validate_doc_id(new.meta.id)
        text = normalise(extract_text(new.data, new.suffix))  # parse before taking the lock
        with self._admin:
            parts, snapshot = self.parts, self.snapshot
            if new.meta.id in snapshot.documents:
                raise ConflictError(f"document {new.meta.id!r} exists; delete it first")
            meta = DocumentMeta(
                **{**new.meta.to_dict(), "source": f"documents/{new.meta.id}{new.suffix}"}
            )
            updated = with_document(
                snapshot,
                Document(meta=meta, text=text),
                embedder=parts.embedder,
                tokenizer=parts.tokenizer,
            )
            atomic_write_bytes(self.settings.corpus_dir / meta.source, new.data)
            parts.store.save(updated)
            catalog = load_catalog(self.settings.catalog_path)
            save_catalog(self.settings.catalog_path, [*catalog, meta])
            self.retriever.use(updated)
            return updated

    def remove_document(self, doc_id: str) -> Snapshot:
        """Stop serving a document and drop it from the catalog (its file is kept)."""
        with self._admin:
            parts, snapshot = self.parts, self.snapshot
            if doc_id not in snapshot.documents:
                raise NotFoundError(f"document {doc_id!r} not found")
            updated = without_document(snapshot, doc_id)
            parts.store.save(updated)
            catalog = load_catalog(self.settings.catalog_path)
            save_catalog(self.settings.catalog_path, [e for e in catalog if e.id != doc_id])
            self.retriever.use(updated)
            return updated

    def rebuild(self) -> Snapshot:
        """Re-read the corpus and rebuild everything; the old index serves meanwhile."""
        with self._admin:
            parts = self.parts
            snapshot = build_snapshot(
                load_corpus(self.settings.corpus_dir),
                embedder=parts.embedder,
                tokenizer=parts.tokenizer,
                settings=self.settings,
            )
            parts.store.save(snapshot)
            self.retriever.use(snapshot)
            return snapshot


def source_suffix(filename: str) -> str:
    return Path(filename).suffix.lower()
