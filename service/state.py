"""What the running service holds: the retriever, and the operations that swap its index.

Loading happens in a background thread so ``/healthz`` answers at once and ``/readyz``
turns 200 when the index is open. Admin changes go through ``index.changes`` (one at a
time across this machine's processes, each from the latest saved version) and build a new
snapshot beside the live one; requests never see a half-updated index. A change made by
another process (another worker or replica, the CLI) moves the store's version: ``check``
notices and serves it.

With Milvus, the replica builds nothing: it opens the shared collection (``index build``
makes it). While Milvus cannot be reached, ``unavailable`` says why (``/readyz`` and every
request that needs the index answer 503); the next ``check`` that reaches it clears it.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from index.answer import Answerer
from index.build import is_up_to_date
from index.changes import DocumentChanges, Saved
from index.documents import DocumentMeta, load_corpus, parse_document, validate_doc_id
from index.embedding import Embedder
from index.errors import (
    CorpusError,
    IndexIntegrityError,
    IndexNotReadyError,
    IndexUnavailableError,
    PayloadTooLargeError,
)
from index.pipeline import (
    Components,
    ensure_snapshot,
    load_components,
    make_answerer,
    make_retriever,
    open_snapshot,
)
from index.retriever import Retriever
from index.searchable import Searchable
from index.settings import Settings

log = logging.getLogger("service.state")

# An upload is chunked and embedded (passages and their sentences) inside its request,
# holding the change lock: a longer text is refused with 413 before any work, so that no
# request holds it for more than minutes. Split it, or add it with ``python -m index add``.
MAX_DOCUMENT_CHARS = 200_000


@dataclass(frozen=True, slots=True)
class NewDocument:
    """An uploaded document with its catalog metadata."""

    meta: DocumentMeta
    data: bytes
    suffix: str


class ServiceState:
    """The retriever once ready; the version it serves, and changes to it."""

    def __init__(self, settings: Settings, *, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self._embedder = embedder
        self._parts: Components | None = None
        self._retriever: Retriever | None = None
        self._answerer: Answerer | None = None
        self._served: Saved | None = None
        self._seen: str | None = None
        """What ``CURRENT`` said when this process last loaded or saved a version."""
        self._swap = threading.Lock()
        self.load_error: str | None = None
        self.load_warning: str | None = None
        """Set when serving in a degraded way (e.g. the corpus cannot be read)."""
        self.unavailable: str | None = None
        """Set while the shared store (Milvus) cannot be reached or holds no index."""

    # ---- start-up -----------------------------------------------------------------------

    def load(self) -> None:
        """Load the model, then the index (building a local one if missing or stale)."""
        try:
            self._parts = load_components(self.settings, embedder=self._embedder)
            self._answerer = make_answerer(self._parts)
        except Exception as exc:  # surfaced by /readyz and the log, never swallowed
            self.load_error = str(exc)
            log.exception("model failed to load")
            return
        self._open_index(self._parts)

    def _open_index(self, parts: Components) -> None:
        try:
            before = parts.store.version()
            snapshot, built = self._open(parts)
        except (IndexUnavailableError, IndexIntegrityError) as exc:
            if parts.store.kind != "milvus":
                self.load_error = str(exc)
                log.exception("index failed to load")
                return
            if self.unavailable != str(exc):
                log.warning("index store not ready: %s", exc)
            self.unavailable = str(exc)  # ``check`` tries again
            return
        except Exception as exc:  # surfaced by /readyz and the log, never swallowed
            self.load_error = str(exc)
            log.exception("index failed to load")
            return
        self.unavailable = None
        self._retriever = make_retriever(parts, snapshot)
        loaded = parts.store.loaded_version
        self._serve(Saved(loaded, snapshot), seen=loaded if built else before)
        # Model, dictionaries and index are millions of long-lived objects: keep the cyclic
        # garbage collector from walking them again and again while requests wait.
        gc.collect()
        gc.freeze()
        log.info(
            "index ready",
            extra={
                "store": parts.store.kind,
                "documents": len(snapshot.catalog),
                "passages": snapshot.manifest.passages,
                "built": built,
            },
        )

    def _open(self, parts: Components) -> tuple[Searchable, bool]:
        """The index for the corpus; if the corpus cannot be read, the last saved index.

        When the current index version is corrupt, the store serves the newest older one
        that verifies; if that one predates the corpus, say so (an admin rebuild fixes it).
        A Milvus collection is opened as it is: replicas never build it.
        """
        if parts.store.kind == "milvus":
            return open_snapshot(parts), False
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
        if not built and store.loaded_version != store.version():
            documents = load_corpus(self.settings.corpus_dir)
            stale = not is_up_to_date(
                snapshot.manifest,
                documents,
                model_id=parts.embedder.model_id,
                settings=self.settings,
            )
            self.load_warning = (
                f"index version {store.version()!r} is unusable; serving the older "
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
        if self.unavailable is not None:
            raise IndexUnavailableError(f"index not ready: {self.unavailable}")
        if self._retriever is None:
            detail = f": {self.load_error}" if self.load_error else "; try again shortly"
            raise IndexNotReadyError(f"index not ready{detail}")
        return self._retriever

    @property
    def answerer(self) -> Answerer:
        self.retriever  # noqa: B018 - raises if not ready
        assert self._answerer is not None  # noqa: S101 - set together with the retriever
        return self._answerer

    @property
    def snapshot(self) -> Searchable:
        return self.retriever.snapshot

    @property
    def parts(self) -> Components:
        self.retriever  # noqa: B018 - raises if not ready
        assert self._parts is not None  # noqa: S101 - set together with the retriever
        return self._parts

    @property
    def version(self) -> str | None:
        """The index version being served (not necessarily what CURRENT names)."""
        return self._served.version if self._served and self.ready else None

    # ---- changes ------------------------------------------------------------------------

    def add_document(self, new: NewDocument) -> Searchable:
        """Index an uploaded document, persist it, then serve it.

        Raises:
            ConflictError: the id exists already.
            InvalidInputError / UnsupportedMediaError: the file cannot be used.
            PayloadTooLargeError: the document has too much text for an upload.
        """
        validate_doc_id(new.meta.id)
        meta = DocumentMeta(
            **{**new.meta.to_dict(), "source": f"documents/{new.meta.id}{new.suffix}"}
        )
        document = parse_document(meta, new.data)  # before waiting for the change lock
        if len(document.text) > MAX_DOCUMENT_CHARS:
            raise PayloadTooLargeError(
                f"the document has {len(document.text)} characters of text; uploads are "
                f"limited to {MAX_DOCUMENT_CHARS} (split it, or add it with "
                "`python -m index add`)"
            )
        return self._change(lambda changes, held: changes.add(document, new.data, held=held))

    def remove_document(self, doc_id: str) -> Searchable:
        """Stop serving a document and drop it from the catalog (its file is kept)."""
        return self._change(lambda changes, held: changes.remove(doc_id, held=held))

    def rebuild(self) -> Searchable:
        """Re-read the corpus and rebuild everything; the old index serves meanwhile."""
        return self._change(lambda changes, held: changes.rebuild())

    def _change(self, change: Callable[[DocumentChanges, Saved | None], Saved]) -> Searchable:
        """Make ``change`` from the latest saved version, then serve what it saved."""
        with self._swap:
            saved = change(DocumentChanges(self.parts), self._served)
            self._serve(saved, seen=saved.version)
            return saved.snapshot

    def check(self) -> None:
        """Follow the store: serve the version another process made current, note a store
        that cannot be reached (503 meanwhile), and open the index once it can be."""
        parts = self._parts
        if parts is None or (self.load_error is not None and not self.ready):
            return  # still loading the model, or failed for good (see /readyz)
        if not self.ready and self.unavailable is None:
            return  # the first open is still running (``load``)
        try:
            version = parts.store.version()
            if not self.ready:
                self._open_index(parts)
                return
            if version != self._seen:
                self.follow(version)
        except IndexUnavailableError as exc:
            if self.unavailable is None:
                log.warning("index store unavailable: %s", exc)
            self.unavailable = str(exc)
            return
        if self.unavailable is not None:
            log.info("index store reachable again")
            self.unavailable = None

    def follow(self, seen: str | None) -> None:
        """Serve the version the store names now (``seen``), moved by another process."""
        parts = self._parts
        assert parts is not None  # noqa: S101 - followed only once loaded
        with self._swap:
            if seen == self._seen:
                return
            try:
                snapshot = open_snapshot(parts)
            except IndexUnavailableError:
                raise  # the store is away: this version is tried again once it is back
            except Exception:
                self._seen = seen  # once per move: a version that cannot load is logged once
                raise
            self._serve(Saved(parts.store.loaded_version, snapshot), seen=seen)
        log.info("serving index version %s", parts.store.loaded_version)

    def _serve(self, saved: Saved, *, seen: str | None) -> None:
        """Serve ``saved`` (also while ``unavailable`` is set: following a store that came
        back must not wait for the flag it clears)."""
        assert self._retriever is not None  # noqa: S101 - set before anything is served
        self._retriever.use(saved.snapshot)
        self._served, self._seen = saved, seen


def source_suffix(filename: str) -> str:
    return Path(filename).suffix.lower()
