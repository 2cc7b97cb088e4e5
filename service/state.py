"""What the running service holds: the retriever, and the admin operations that swap it.

Loading happens in a background thread so ``/healthz`` answers at once and ``/readyz``
turns 200 when the index is in memory. Admin changes are serialised by one lock and
build a new snapshot beside the live one; requests never see a half-updated index.

An admin change persists all or nothing: the new index version, the catalog and the
uploaded source are first written in full beside the live files (this is where a full
disk fails, and then nothing live has changed), then switched in by renames, catalog
before index. The live index and the catalog on disk never disagree after a failed
write; a crash between the last two renames leaves a catalog that is newer than the
index, which the next start notices and rebuilds.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from index.build import build_snapshot, is_up_to_date, with_document, without_document
from index.documents import (
    Document,
    DocumentMeta,
    extract_text,
    load_catalog,
    load_corpus,
    validate_doc_id,
)
from index.embedding import Embedder
from index.errors import (
    ConflictError,
    CorpusError,
    IndexNotReadyError,
    NotFoundError,
    PayloadTooLargeError,
)
from index.normalise import normalise
from index.pipeline import (
    Components,
    ensure_snapshot,
    load_components,
    make_retriever,
    open_snapshot,
)
from index.retriever import Retriever
from index.settings import Settings
from index.snapshot import Snapshot
from index.store import IndexWriteError, PendingVersion, StagedFile

log = logging.getLogger("service.state")

# An upload is chunked and embedded (passages and their sentences) inside its request,
# under the admin lock: about 800 characters a second on a busy 2-core machine (measured
# with the corpus). The largest corpus document has 7.3k characters; 200k characters take
# minutes, and anything longer (a 10 MB single-line .txt would take hours) is refused with
# 413 before any work. Split it, or add it offline with ``python -m index add``.
MAX_DOCUMENT_CHARS = 200_000


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
        self._version: str | None = None
        self.load_error: str | None = None
        self.load_warning: str | None = None
        """Set when serving in a degraded way (e.g. the corpus cannot be read)."""

    # ---- start-up -----------------------------------------------------------------------

    def load(self) -> None:
        """Load model and index (building the index if missing or stale)."""
        try:
            parts = load_components(self.settings, embedder=self._embedder)
            snapshot, built = self._open(parts)
        except Exception as exc:  # surfaced by /readyz and the log, never swallowed
            self.load_error = str(exc)
            log.exception("index failed to load")
            return
        self._parts = parts
        self._version = parts.store.loaded_version
        self._retriever = make_retriever(parts, snapshot)
        # Model, dictionaries and index are millions of long-lived objects: keep the cyclic
        # garbage collector from walking them again and again while requests wait.
        gc.collect()
        gc.freeze()
        log.info(
            "index ready",
            extra={
                "documents": len(snapshot.documents),
                "passages": snapshot.manifest.passages,
                "built": built,
            },
        )

    def _open(self, parts: Components) -> tuple[Snapshot, bool]:
        """The index for the corpus; if the corpus cannot be read, the last saved index.

        When the current index version is corrupt, the store serves the newest older one
        that verifies; if that one predates the corpus, say so (an admin rebuild fixes it).
        """
        try:
            snapshot, built = ensure_snapshot(parts)
        except CorpusError as exc:
            try:
                snapshot = open_snapshot(parts)
            except Exception:
                raise exc from None  # nothing to fall back to: the corpus error is the news
            self.load_warning = f"corpus cannot be read ({exc}); serving the saved index"
            log.warning(
                "corpus cannot be read (%s); serving the last saved index %s",
                exc,
                parts.store.loaded_version,
            )
            return snapshot, False
        store = parts.store
        if not built and store.loaded_version != store.current_version():
            documents = load_corpus(self.settings.corpus_dir)
            stale = not is_up_to_date(
                snapshot.manifest,
                documents,
                model_id=parts.embedder.model_id,
                settings=self.settings,
            )
            self.load_warning = (
                f"index version {store.current_version()!r} is unusable; serving the older "
                f"version {store.loaded_version}"
                + ("; it predates the corpus: rebuild (POST /v1/admin/rebuild)" if stale else "")
            )
            log.warning(self.load_warning)
        return snapshot, built

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
        """The index version being served (not necessarily what CURRENT names)."""
        return self._version if self.ready else None

    # ---- admin ------------------------------------------------------------------------

    def add_document(self, new: NewDocument) -> Snapshot:
        """Index an uploaded document, persist it, then serve it.

        Raises:
            ConflictError: the id exists already.
            InvalidInputError / UnsupportedMediaError: the file cannot be used.
        """
        validate_doc_id(new.meta.id)
        text = normalise(extract_text(new.data, new.suffix))  # parse before taking the lock
        if len(text) > MAX_DOCUMENT_CHARS:
            raise PayloadTooLargeError(
                f"the document has {len(text)} characters of text; uploads are limited to "
                f"{MAX_DOCUMENT_CHARS} (split it, or add it with `python -m index add`)"
            )
        with self._admin:
            parts, snapshot = self.parts, self.snapshot
            if new.meta.id in snapshot.documents:
                raise ConflictError(f"document {new.meta.id!r} exists; delete it first")
            meta = DocumentMeta(
                **{**new.meta.to_dict(), "source": f"documents/{new.meta.id}{new.suffix}"}
            )
            catalog = load_catalog(self.settings.catalog_path)
            updated = with_document(
                snapshot,
                Document(meta=meta, text=text),
                embedder=parts.embedder,
                tokenizer=parts.tokenizer,
            )
            self._persist(
                updated,
                catalog=[*[e for e in catalog if e.id != meta.id], meta],
                source=(self.settings.corpus_dir / meta.source, new.data),
            )
            return updated

    def remove_document(self, doc_id: str) -> Snapshot:
        """Stop serving a document and drop it from the catalog (its file is kept)."""
        with self._admin:
            snapshot = self.snapshot
            if doc_id not in snapshot.documents:
                raise NotFoundError(f"document {doc_id!r} not found")
            updated = without_document(snapshot, doc_id)
            catalog = load_catalog(self.settings.catalog_path)
            self._persist(updated, catalog=[e for e in catalog if e.id != doc_id])
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
            self._persist(snapshot)
            return snapshot

    def _persist(
        self,
        snapshot: Snapshot,
        *,
        catalog: list[DocumentMeta] | None = None,
        source: tuple[Path, bytes] | None = None,
    ) -> None:
        """Save ``snapshot`` (with the catalog and an uploaded source), then serve it.

        Raises:
            IndexWriteError: something could not be written (e.g. the disk is full);
                nothing live changed and the current index keeps serving.
        """
        staged: list[StagedFile] = []
        pending: PendingVersion | None = None
        try:
            pending = self.parts.store.prepare(snapshot)
            if source is not None:
                staged.append(StagedFile(*source))
            if catalog is not None:
                staged.append(StagedFile(self.settings.catalog_path, catalog_bytes(catalog)))
        except BaseException as exc:
            for file in staged:
                file.discard()
            if pending is not None:
                pending.discard()
            if isinstance(exc, OSError):
                raise IndexWriteError(
                    f"cannot write the index ({exc.strerror or exc}); nothing was changed "
                    "and the current index keeps serving"
                ) from exc
            raise
        # Only renames from here: source, then catalog, then the index pointer.
        for file in staged:
            file.commit()
        self._version = pending.commit()
        self.retriever.use(snapshot)


def catalog_bytes(entries: list[DocumentMeta]) -> bytes:
    """The catalog file's content, exactly as ``index.documents.save_catalog`` writes it."""
    payload = json.dumps(
        {"documents": [e.to_dict() for e in entries]}, ensure_ascii=False, indent=2
    )
    return (payload + "\n").encode("utf-8")


def source_suffix(filename: str) -> str:
    return Path(filename).suffix.lower()
