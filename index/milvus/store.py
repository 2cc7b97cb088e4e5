"""The index in Milvus: built, changed and opened through ``pymilvus``, shared by replicas.

Every replica reads the same collection, so a change made through one is searched by all;
each follows the manifest row's generation, which every change renews after its rows are
written and flushed. A document is visible once its documents row is written (its passages
go in first) and gone once that row is deleted (its passages go next): a search drops
passages of documents its view does not hold, so nobody sees half a document.

Any failure to reach Milvus, or an answer later than ``milvus_timeout_s``, raises
``IndexUnavailableError`` (503): a request is answered whole or refused, never in part.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from index.build import Embedded, chunking_params, embed_documents
from index.dense import (
    HNSW_EF_CONSTRUCTION,
    HNSW_EF_SEARCH,
    HNSW_M,
    IVF_NPROBE,
    choose_index_type,
    ivf_lists,
)
from index.documents import Document
from index.embedding import Embedder
from index.errors import IndexIntegrityError, IndexUnavailableError, NotFoundError
from index.files import file_lock
from index.lexical import Tokenizer
from index.milvus.schema import (
    MANIFEST_KEY,
    PASSAGE_FIELDS,
    SCHEMA_VERSION,
    create_collections,
    document_rows,
    documents_collection,
    manifest_row,
    meta_from_info,
    vector_rows,
)
from index.milvus.view import DocumentEntry, MilvusView, TermCounts
from index.searchable import Searchable
from index.settings import Settings
from index.snapshot import Manifest, corpus_fingerprint, document_fingerprint

log = logging.getLogger(__name__)

T = TypeVar("T")
INSERT_BATCH = 1_000
# Milvus answers at most this many rows per query (offset + limit); larger reads go in
# batches of QUERY_BATCH.
QUERY_LIMIT = 16_384
QUERY_BATCH = 4_096
# gRPC servers refuse keepalive pings more often than every 5 minutes by default (they
# answer "too many pings" and drop the connection in the middle of a long flush); every
# call has its own timeout, which is what notices an outage.
GRPC_OPTIONS = {"grpc.keepalive_time_ms": 300_000, "grpc.keepalive_permit_without_calls": False}


def client(uri: str, *, token: str = "", timeout: float) -> Any:
    """A client with a connection of its own (pymilvus otherwise shares one per URI, with
    whatever options its first user gave it)."""
    from pymilvus import MilvusClient

    return MilvusClient(
        uri=uri, token=token, timeout=timeout, grpc_options=GRPC_OPTIONS, dedicated=True
    )


BUILD_HINT = "build it with `make index STORE=milvus` (or `python -m index build`)"


def _dense_index(index_type: str, vectors: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Milvus index and search parameters matching the local index of that type."""
    if index_type == "hnsw":
        build = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION}
        return {"index_type": "HNSW", "metric_type": "IP", "params": build}, {"ef": HNSW_EF_SEARCH}
    if index_type == "ivf":
        lists = ivf_lists(vectors)
        return {"index_type": "IVF_SQ8", "metric_type": "IP", "params": {"nlist": lists}}, {
            "nprobe": IVF_NPROBE
        }
    return {"index_type": "FLAT", "metric_type": "IP"}, {}


@dataclass
class Written:
    """A change already written to Milvus (``Pending`` for ``index.changes``)."""

    index: MilvusView
    version: str | None

    def commit(self) -> str | None:
        return self.version

    def discard(self) -> None:
        """Nothing to undo: changes reach Milvus after everything that can fail locally."""


class MilvusConnection:
    """One client to one Milvus, (re)connected on demand; every failure is a 503."""

    def __init__(self, settings: Settings) -> None:
        self.uri = settings.milvus_address
        self.collection = settings.milvus_collection
        self.documents = documents_collection(settings.milvus_collection)
        self.timeout = settings.milvus_timeout_s
        self._token = settings.milvus_token
        self._client: Any = None
        # pymilvus logs every failed call with a traceback (its import configures that, so
        # it is imported first); an outage is reported once, by the service, and as 503s.
        import pymilvus  # noqa: F401

        for name in ("pymilvus", "pymilvus.decorators"):
            logging.getLogger(name).setLevel(logging.CRITICAL)

    def call(self, operation: Callable[[Any], T]) -> T:
        """Run ``operation(client)``; a failure to reach Milvus becomes a 503 and the next
        call connects afresh. A restarted Milvus holds its collections released: they are
        loaded again and the operation retried once."""
        from pymilvus.exceptions import MilvusException

        try:
            if self._client is None:
                token = self._token.get_secret_value() if self._token else ""
                self._client = client(self.uri, token=token, timeout=self.timeout)
            try:
                return operation(self._client)
            except MilvusException as exc:
                if "released" not in str(exc) and "not loaded" not in str(exc):
                    raise
                self._load(self._client)
                return operation(self._client)
        except (MilvusException, OSError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            if "not found" in message.lower() or "not exist" in message.lower():
                raise IndexIntegrityError(
                    f"no index in Milvus at {self.uri} ({message}); {BUILD_HINT}"
                ) from exc
            self._client = None
            raise IndexUnavailableError(
                f"the index store (Milvus at {self.uri}) is unavailable: {message}"
            ) from exc

    def _load(self, client: Any) -> None:
        for name in (self.collection, self.documents):
            if client.has_collection(name, timeout=self.timeout):
                client.load_collection(name, timeout=self.timeout)

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    # ---- reading ------------------------------------------------------------------------

    def manifest_info(self) -> dict[str, Any] | None:
        """The manifest row's fields, or None when there is no index."""

        def read(client: Any) -> dict[str, Any] | None:
            if not client.has_collection(self.documents, timeout=self.timeout):
                return None
            rows = client.get(
                self.documents, ids=[MANIFEST_KEY], output_fields=["info"], timeout=self.timeout
            )
            return dict(rows[0]["info"]) if rows else None

        return self.call(read)

    def document_infos(self) -> dict[str, dict[str, Any]]:
        rows = self.query_all(self.documents, "part == 0", ["doc_id", "info"])
        return {row["doc_id"]: dict(row["info"]) for row in rows}

    def query_all(self, collection: str, condition: str, fields: list[str]) -> list[Any]:
        """Every row matching ``condition``, read in batches (one query answers at most
        16,384 rows)."""

        def read(client: Any) -> list[Any]:
            rows: list[Any] = []
            batches = client.query_iterator(
                collection,
                batch_size=QUERY_BATCH,
                filter=condition,
                output_fields=fields,
                timeout=self.timeout,
            )
            try:
                while batch := batches.next():
                    rows.extend(batch)
            finally:
                batches.close()
            return rows

        return self.call(read)

    def document_terms(self, doc_ids: list[str]) -> dict[str, dict[int, int]]:
        if not doc_ids:
            return {}
        rows = self.call(
            lambda client: client.get(
                self.documents,
                ids=[f"{doc_id}/0" for doc_id in doc_ids],
                output_fields=["doc_id", "terms"],
                timeout=self.timeout,
            )
        )
        return {row["doc_id"]: {int(d): round(v) for d, v in row["terms"].items()} for row in rows}

    def document_text(self, doc_id: str, parts: int) -> str:
        rows = self.call(
            lambda client: client.get(
                self.documents,
                ids=[f"{doc_id}/{part}" for part in range(parts)],
                output_fields=["part", "text"],
                timeout=self.timeout,
            )
        )
        if len(rows) != parts:
            raise IndexUnavailableError(f"document {doc_id!r} changed while it was read")
        return "".join(row["text"] for row in sorted(rows, key=lambda row: int(row["part"])))

    def get_passages(self, keys: list[str]) -> list[dict[str, Any]]:
        return self.call(
            lambda client: list(
                client.get(
                    self.collection, ids=keys, output_fields=PASSAGE_FIELDS, timeout=self.timeout
                )
            )
        )

    def search(
        self,
        field: str,
        query: Any,
        k: int,
        *,
        params: dict[str, Any],
        doc_ids: frozenset[str] | None,
        fields: list[str],
    ) -> list[tuple[dict[str, Any], float]]:
        """(row fields, score) pairs, best first."""
        if k <= 0 or (doc_ids is not None and not doc_ids):
            return []
        condition = "" if doc_ids is None else f"doc_id in {json.dumps(sorted(doc_ids))}"
        found = self.call(
            lambda client: client.search(
                self.collection,
                data=[query],
                anns_field=field,
                limit=min(k, QUERY_LIMIT),
                filter=condition,
                output_fields=fields,
                search_params={"metric_type": "IP", "params": params},
                timeout=self.timeout,
            )
        )
        return [(hit["entity"], float(hit["distance"])) for hit in found[0]]

    # ---- writing ------------------------------------------------------------------------

    def insert(self, collection: str, rows: Iterator[dict[str, Any]], *, total: int = 0) -> None:
        batch: list[dict[str, Any]] = []
        with tqdm(total=total, desc="milvus", unit="row", disable=not total) as progress:
            for row in rows:
                batch.append(row)
                if len(batch) == INSERT_BATCH:
                    self._insert(collection, batch)
                    progress.update(len(batch))
                    batch = []
            if batch:
                self._insert(collection, batch)
                progress.update(len(batch))

    def _insert(self, collection: str, rows: list[dict[str, Any]]) -> None:
        self.call(lambda client: client.insert(collection, rows, timeout=self.timeout))

    def delete_document(self, doc_id: str) -> None:
        """Its documents rows first (it stops being visible), then its passages."""
        condition = f"doc_id == {json.dumps(doc_id)}"

        def run(client: Any) -> None:
            for name in (self.documents, self.collection):
                client.delete(name, filter=condition, timeout=self.timeout)

        self.call(run)

    def flush(self) -> None:
        """Seal what was written: unflushed rows are searched by brute force (Lite)."""

        def run(client: Any) -> None:
            for name in (self.collection, self.documents):
                client.flush(name, timeout=self.timeout)

        self.call(run)

    def renew(self, fields: dict[str, Any]) -> None:
        """Write the manifest row with a new generation: followers notice the change."""
        row = manifest_row({**fields, "generation": uuid.uuid4().hex})
        self.call(lambda client: client.upsert(self.documents, [row], timeout=self.timeout))
        self.call(lambda client: client.flush(self.documents, timeout=self.timeout))

    def recreate(self, *, dimension: int, dense_index: dict[str, Any]) -> None:
        def run(client: Any) -> None:
            for name in (self.documents, self.collection):
                if client.has_collection(name, timeout=self.timeout):
                    client.drop_collection(name, timeout=self.timeout)
            create_collections(
                client, self.collection, dimension=dimension, dense_index=dense_index
            )

        self.call(run)


class MilvusStore:
    """The index of one corpus in Milvus (see the module docstring for the guarantees)."""

    kind = "milvus"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.connection = MilvusConnection(settings)
        self._lock_path = settings.index_root / "milvus-changes.lock"
        self._entries: dict[str, DocumentEntry] = {}
        self._terms = TermCounts()
        self._texts: dict[tuple[str, str], str] = {}
        self.loaded_version: str | None = None
        """The generation this process last opened or wrote."""

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Changes from this machine's processes take turns (two machines changing the same
        document at once: the last write wins)."""
        return file_lock(self._lock_path)

    def version(self) -> str | None:
        """The manifest's generation (None: no index in Milvus)."""
        info = self.connection.manifest_info()
        return None if info is None else str(info.get("generation"))

    def current_manifest(self) -> Manifest | None:
        info = self.connection.manifest_info()
        if info is None:
            return None
        return self._manifest(info, self._load_entries())

    def open(self, *, embedder: Embedder) -> MilvusView:
        """The collection as it is now, refused if it was built with another model.

        Raises:
            IndexIntegrityError: no index, or one built with another model or format.
            IndexUnavailableError: Milvus cannot be reached.
        """
        from index.build import check_compatible

        info = self.connection.manifest_info()
        if info is None:
            raise IndexIntegrityError(
                f"no index in Milvus at {self.connection.uri} "
                f"(collection {self.connection.collection!r}); {BUILD_HINT}"
            )
        if info.get("schema_version") != SCHEMA_VERSION:
            raise IndexIntegrityError(
                f"the Milvus collection has schema {info.get('schema_version')}, not "
                f"{SCHEMA_VERSION}; rebuild it: `python -m index build --force`"
            )
        manifest = self._manifest(info, self._load_entries())
        check_compatible(manifest, embedder=embedder)
        self.loaded_version = str(info.get("generation"))
        return MilvusView(
            self.connection,
            manifest=manifest,
            entries=dict(self._entries),
            terms=self._terms,
            texts=self._texts,
            search_params=dict(info["search_params"]),
        )

    def build(
        self,
        documents: list[Document],
        *,
        embedder: Embedder,
        tokenizer: Tokenizer,
        show_progress: bool = False,
    ) -> tuple[MilvusView, str | None]:
        """Replace the collection with one built from ``documents`` (replicas answer 503
        until it is written)."""
        chunking = chunking_params(self.settings)
        embedded = embed_documents(
            documents,
            embedder=embedder,
            tokenizer=tokenizer,
            chunking=chunking,
            show_progress=show_progress,
        )
        vectors = len(embedded.ids)
        index_type = choose_index_type(vectors, self.settings.index_type)
        dense_index, search_params = _dense_index(index_type, vectors)
        lengths = [len(tokens) or 1 for tokens in embedded.tokens.values()]
        fields = {
            "model_id": embedder.model_id,
            "dimension": embedder.dimension,
            "chunking": chunking,
            "index_type": index_type,
            "search_params": search_params,
            "mean_length": float(np.mean(lengths)) if lengths else 1.0,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self.connection.recreate(dimension=embedder.dimension, dense_index=dense_index)
        self._write(documents, embedded, fields, total=vectors if show_progress else 0)
        view = self.open(embedder=embedder)
        return view, self.loaded_version

    def prepare_add(
        self, base: Searchable, document: Document, *, embedder: Embedder, tokenizer: Tokenizer
    ) -> Written:
        """Index ``document`` (replacing one with its id): its passages, then its row. Milvus
        has no transactions, so this writes at once and every replica sees it."""
        fields = self._fields()
        embedded = embed_documents(
            [document], embedder=embedder, tokenizer=tokenizer, chunking=fields["chunking"]
        )
        self.connection.delete_document(document.id)
        self._write([document], embedded, fields)
        return Written(self.open(embedder=embedder), self.loaded_version)

    def prepare_remove(self, base: Searchable, doc_id: str, *, embedder: Embedder) -> Written:
        """Take a document out: its row first (it disappears from every view), then its
        passages.

        Raises:
            NotFoundError: the collection has no such document.
        """
        fields = self._fields()
        if doc_id not in base.catalog:
            raise NotFoundError(f"document {doc_id!r} is not in the index")
        self.connection.delete_document(doc_id)
        self.connection.flush()
        self.connection.renew(fields)
        return Written(self.open(embedder=embedder), self.loaded_version)

    # ---- internals ----------------------------------------------------------------------

    def _fields(self) -> dict[str, Any]:
        info = self.connection.manifest_info()
        if info is None:
            raise IndexIntegrityError(f"no index in Milvus at {self.connection.uri}; {BUILD_HINT}")
        return {k: v for k, v in info.items() if k not in ("generation", "schema_version")}

    def _write(
        self,
        documents: list[Document],
        embedded: Embedded,
        fields: dict[str, Any],
        *,
        total: int = 0,
    ) -> None:
        """Passages first, then the documents' rows, flushed, then a new generation."""
        titles = {document.id: document.meta.title for document in documents}
        rows = vector_rows(
            embedded.chunks,
            embedded.vectors,
            embedded.ids,
            embedded.tokens,
            mean_length=float(fields["mean_length"]),
            titles=titles,
        )
        self.connection.insert(self.connection.collection, rows, total=total)
        by_doc: dict[str, list[int]] = {}
        for row, chunk in embedded.chunks.items():
            by_doc.setdefault(chunk.doc_id, []).append(row)
        document_records = (
            record
            for document in documents
            for record in document_rows(
                document,
                fingerprint=document_fingerprint(document),
                chunks=[embedded.chunks[row] for row in by_doc.get(document.id, [])],
                tokens=[embedded.tokens[row] for row in by_doc.get(document.id, [])],
            )
        )
        self.connection.insert(self.connection.documents, document_records)
        self.connection.flush()
        self.connection.renew(fields)

    def _load_entries(self) -> dict[str, DocumentEntry]:
        """Every document's entry; term counts are fetched only for new or changed ones."""
        infos = self.connection.document_infos()
        fresh = [
            doc_id
            for doc_id, info in infos.items()
            if (known := self._entries.get(doc_id)) is None
            or known.fingerprint != info["fingerprint"]
        ]
        terms = self.connection.document_terms(fresh)
        entries: dict[str, DocumentEntry] = {}
        for doc_id, info in infos.items():
            known = self._entries.get(doc_id)
            if doc_id in terms or known is None or known.fingerprint != info["fingerprint"]:
                entries[doc_id] = DocumentEntry(
                    meta=meta_from_info(info),
                    fingerprint=info["fingerprint"],
                    passages=int(info["passages"]),
                    length=int(info["length"]),
                    parts=int(info["parts"]),
                    terms=terms.get(doc_id, {}),
                )
            else:
                entries[doc_id] = known
        gone = [e for d, e in self._entries.items() if entries.get(d) is not e]
        new = [e for d, e in entries.items() if self._entries.get(d) is not e]
        self._terms = self._terms.updated(removed=gone, added=new)
        self._entries = entries
        return entries

    def _manifest(self, info: dict[str, Any], entries: dict[str, DocumentEntry]) -> Manifest:
        fingerprints = {doc_id: entry.fingerprint for doc_id, entry in entries.items()}
        return Manifest(
            model_id=info["model_id"],
            dimension=int(info["dimension"]),
            corpus_hash=corpus_fingerprint(fingerprints),
            chunking=dict(info["chunking"]),
            index_type=f"milvus-{info['index_type']}",
            passages=sum(entry.passages for entry in entries.values()),
            documents=fingerprints,
            next_row_id=0,
            created=info["created"],
            main_segment="",
        )
