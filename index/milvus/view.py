"""One state of a Milvus collection, searched like a local snapshot (``Searchable``).

A view holds what every search needs at hand, and only that: the catalog, each document's
term counts (summed into BM25's document frequencies) and the manifest. Passages, their
vectors and the documents' text stay in Milvus; a search fetches only the passages it
returns, and a document's text is fetched when first read and kept while it is unchanged.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from index.chunking import Chunk
from index.documents import Document, DocumentMeta
from index.lexical import bm25_idf, knows_term
from index.milvus.schema import PASSAGE_FIELDS, chunk_from_row, term_dimension, vector_key
from index.searchable import Match
from index.snapshot import Manifest

if TYPE_CHECKING:
    from index.milvus.store import MilvusConnection


@dataclass(frozen=True)
class DocumentEntry:
    """What the documents collection says of one document."""

    meta: DocumentMeta
    fingerprint: str
    passages: int
    length: int
    """Characters of text."""
    parts: int
    terms: dict[int, int]
    """How many of its passages contain each term (by dimension)."""


class TermCounts:
    """BM25's document frequencies over every passage: the sum of the documents' term
    counts, kept up to date by adding and subtracting the documents that changed."""

    def __init__(self, df: Counter[int] | None = None, passages: int = 0) -> None:
        self._df: Counter[int] = df if df is not None else Counter()
        self.passages = passages

    def updated(
        self, *, removed: Iterable[DocumentEntry], added: Iterable[DocumentEntry]
    ) -> TermCounts:
        """New counts without ``removed`` and with ``added`` (this one is unchanged)."""
        df = self._df.copy()
        passages = self.passages
        for entry in removed:
            df.subtract(entry.terms)
            passages -= entry.passages
        for entry in added:
            df.update(entry.terms)
            passages += entry.passages
        return TermCounts(+df, passages)  # unary plus drops the terms that reached zero

    def idf(self, term: str) -> float:
        return bm25_idf(int(self._df.get(term_dimension(term), 0)), max(self.passages, 1))

    def knows(self, term: str) -> bool:
        return knows_term(term, lambda word: term_dimension(word) in self._df)

    def query_vector(self, tokens: list[str]) -> dict[int, float]:
        """count x idf per query term the corpus holds (its inner product with a passage's
        vector is the passage's BM25 score)."""
        vector: dict[int, float] = {}
        for term, count in Counter(tokens).items():
            dimension = term_dimension(term)
            if dimension in self._df:
                vector[dimension] = vector.get(dimension, 0.0) + count * self.idf(term)
        return vector


class LazyDocuments(Mapping[str, Document]):
    """The view's documents; a text is fetched on first read and cached by fingerprint."""

    def __init__(
        self,
        entries: Mapping[str, DocumentEntry],
        connection: MilvusConnection,
        texts: dict[tuple[str, str], str],
    ) -> None:
        self._entries = entries
        self._connection = connection
        self._texts = texts

    def __getitem__(self, doc_id: str) -> Document:
        entry = self._entries[doc_id]
        key = (doc_id, entry.fingerprint)
        text = self._texts.get(key)
        if text is None:
            text = self._connection.document_text(doc_id, entry.parts)
            self._texts[key] = text
        return Document(meta=entry.meta, text=text)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._entries


class MilvusView:
    """A ``Searchable`` over one collection at one generation."""

    def __init__(
        self,
        connection: MilvusConnection,
        *,
        manifest: Manifest,
        entries: dict[str, DocumentEntry],
        terms: TermCounts,
        texts: dict[tuple[str, str], str],
        search_params: dict[str, Any],
    ) -> None:
        self.connection = connection
        self.manifest = manifest
        self._entries = entries
        self.catalog: Mapping[str, DocumentMeta] = {d: e.meta for d, e in entries.items()}
        self.documents: Mapping[str, Document] = LazyDocuments(entries, connection, texts)
        self.lexical = terms
        self._search_params = search_params

    @property
    def entries(self) -> Mapping[str, DocumentEntry]:
        return self._entries

    def document_size(self, doc_id: str) -> tuple[int, int]:
        entry = self._entries[doc_id]
        return entry.passages, entry.length

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        if doc_id not in self._entries:
            return []
        condition = f"doc_id == {json.dumps(doc_id)} and slot == 0"
        rows = self.connection.query_all(self.connection.collection, condition, PASSAGE_FIELDS)
        return sorted((chunk_from_row(row) for row in rows), key=lambda chunk: chunk.ordinal)

    def chunk_by_id(self, chunk_id: str) -> Chunk | None:
        return self.chunks_by_id([chunk_id]).get(chunk_id)

    def chunks_by_id(self, chunk_ids: Collection[str]) -> dict[str, Chunk]:
        if not chunk_ids:
            return {}
        rows = self.connection.get_passages([vector_key(c, 0) for c in chunk_ids])
        chunks = (chunk_from_row(row) for row in rows)
        return {chunk.chunk_id: chunk for chunk in chunks if chunk.doc_id in self._entries}

    def search_dense(
        self, vector: np.ndarray, k: int, *, doc_ids: frozenset[str] | None = None
    ) -> list[Match]:
        found = self.connection.search(
            "dense",
            np.asarray(vector, dtype=np.float32).ravel().tolist(),
            k,
            params=self._search_params,
            doc_ids=doc_ids,
            fields=["chunk_id", "doc_id", "ordinal", "slot"],
        )
        # Equal cosines are common (overlapping passages share sentences): within a document,
        # order them as the local store's FAISS does, later vectors first, so both stores
        # rank alike.
        found.sort(
            key=lambda pair: (
                -pair[1],
                pair[0]["doc_id"],
                -pair[0]["ordinal"],
                -pair[0]["slot"],
            )
        )
        return [
            Match(hit["chunk_id"], hit["doc_id"], score, int(hit["slot"]))
            for hit, score in found
            if hit["doc_id"] in self._entries  # half-written or half-removed documents
        ]

    def search_lexical(
        self, tokens: list[str], k: int, *, doc_ids: frozenset[str] | None = None
    ) -> list[Match]:
        query = self.lexical.query_vector(tokens)
        if not query:
            return []
        found = self.connection.search(
            "sparse", query, k, params={}, doc_ids=doc_ids, fields=["chunk_id", "doc_id", "ordinal"]
        )
        # Equal scores in passage order, as the local BM25 keeps them.
        found.sort(key=lambda pair: (-pair[1], pair[0]["doc_id"], pair[0]["ordinal"]))
        return [
            Match(hit["chunk_id"], hit["doc_id"], score)
            for hit, score in found
            if score > 0 and hit["doc_id"] in self._entries
        ]
