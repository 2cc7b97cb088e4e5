"""An immutable, searchable index: documents, chunks, dense and lexical indexes.

The service holds one snapshot and swaps it for another atomically; changes (add or
remove a document) produce a new snapshot and never touch the one being served.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from index.chunking import Chunk
from index.dense import DenseIndex
from index.documents import Document, DocumentMeta
from index.lexical import LexicalIndex
from index.searchable import Match

# 2: BM25 main + delta segments (bm25/segments.json).
# 3: dense, documents and passages split the same way (delta/), and a main segment id.
# 4: the BM25 main segment as the project's own numpy arrays (bm25/*.npy, vocabulary.json).
FORMAT_VERSION = 4
# Each passage owns up to 1024 vectors (itself, then its sentences): id = row * 1024 + j.
VECTOR_SLOTS = 1024


def vector_ids(row: int, count: int) -> np.ndarray:
    """Dense-index ids of a passage's ``count`` vectors."""
    return np.arange(row * VECTOR_SLOTS, row * VECTOR_SLOTS + count, dtype=np.int64)


def split_vector_id(vector_id: int) -> tuple[int, int]:
    """(passage row, vector slot); slot 0 is the whole passage, slot j its sentence j-1."""
    return divmod(vector_id, VECTOR_SLOTS)


@dataclass(frozen=True, slots=True)
class Manifest:
    """What an index was built from; a loader refuses one that does not match."""

    model_id: str
    dimension: int
    corpus_hash: str
    chunking: dict[str, int]
    index_type: str
    passages: int
    documents: dict[str, str]
    next_row_id: int
    created: str
    main_segment: str
    """Names the main segment (made by a build, a compaction or a removal): versions with
    the same id hold byte-identical main-segment files."""
    format_version: int = FORMAT_VERSION
    files: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Manifest:
        return cls(**raw)


def document_fingerprint(document: Document) -> str:
    """Changes when a document's metadata or normalised text changes."""
    payload = json.dumps(document.meta.to_dict(), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256((payload + "\0" + document.text).encode("utf-8")).hexdigest()


def corpus_fingerprint(fingerprints: dict[str, str]) -> str:
    """One hash over every document's fingerprint, independent of catalog order."""
    joined = "\n".join(f"{doc_id}:{fp}" for doc_id, fp in sorted(fingerprints.items()))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Snapshot:
    """Everything retrieval needs, consistent with itself."""

    manifest: Manifest
    documents: dict[str, Document]
    chunks: dict[int, Chunk]
    tokens: dict[int, list[str]]
    dense: DenseIndex
    lexical: LexicalIndex
    lexical_rows: np.ndarray
    _row_by_chunk_id: dict[str, int] = field(init=False, repr=False)
    _rows_by_doc: dict[str, list[int]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_id = {chunk.chunk_id: row for row, chunk in self.chunks.items()}
        by_doc: dict[str, list[int]] = {}
        for row, chunk in self.chunks.items():
            by_doc.setdefault(chunk.doc_id, []).append(row)
        object.__setattr__(self, "_row_by_chunk_id", by_id)
        # A document filter is per request: look rows up, never scan every passage.
        object.__setattr__(self, "_rows_by_doc", by_doc)

    @property
    def delta_rows(self) -> np.ndarray:
        """Rows added since the main segment was made (BM25 and dense deltas hold them)."""
        return self.lexical_rows[self.lexical.main_size :]

    def chunk_by_id(self, chunk_id: str) -> Chunk | None:
        row = self._row_by_chunk_id.get(chunk_id)
        return None if row is None else self.chunks[row]

    # ---- the Searchable interface (index/searchable.py) --------------------------------

    @cached_property
    def catalog(self) -> Mapping[str, DocumentMeta]:
        return {doc_id: document.meta for doc_id, document in self.documents.items()}

    def document_size(self, doc_id: str) -> tuple[int, int]:
        return len(self._rows_by_doc.get(doc_id, ())), len(self.documents[doc_id].text)

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        rows = self._rows_by_doc.get(doc_id, [])
        return sorted((self.chunks[row] for row in rows), key=lambda chunk: chunk.ordinal)

    def chunks_by_id(self, chunk_ids: Collection[str]) -> dict[str, Chunk]:
        rows = ((chunk_id, self._row_by_chunk_id.get(chunk_id)) for chunk_id in chunk_ids)
        return {chunk_id: self.chunks[row] for chunk_id, row in rows if row is not None}

    def search_dense(
        self, vector: np.ndarray, k: int, *, doc_ids: frozenset[str] | None = None
    ) -> list[Match]:
        allowed = None
        if doc_ids is not None:
            allowed = self.vector_ids_for_rows(self.rows_for_documents(set(doc_ids)))
        matches = []
        for vector_id, score in self.dense.search(vector, k, allowed=allowed):
            row, slot = split_vector_id(vector_id)
            chunk = self.chunks[row]
            matches.append(Match(chunk.chunk_id, chunk.doc_id, score, slot))
        return matches

    def search_lexical(
        self, tokens: list[str], k: int, *, doc_ids: frozenset[str] | None = None
    ) -> list[Match]:
        mask = None
        if doc_ids is not None:
            mask = self.lexical_mask(self.rows_for_documents(set(doc_ids)))
        found = self.lexical.search(tokens, k=k, allowed=mask)
        # One gather, not an element lookup per hit (``lexical_rows`` may be mapped).
        rows = self.lexical_rows[[position for position, _ in found]].tolist()
        chunks = (self.chunks[row] for row in rows)
        return [
            Match(chunk.chunk_id, chunk.doc_id, score)
            for chunk, (_, score) in zip(chunks, found, strict=True)
        ]

    def rows_for_documents(self, doc_ids: set[str]) -> np.ndarray:
        """Row ids of every chunk in the given documents."""
        rows = [row for doc_id in doc_ids for row in self._rows_by_doc.get(doc_id, ())]
        return np.array(sorted(rows), dtype=np.int64)

    def vector_ids_for_rows(self, rows: np.ndarray) -> np.ndarray:
        """Every dense-index id belonging to the given passages."""
        parts = [vector_ids(int(r), 1 + len(self.chunks[int(r)].sentences)) for r in rows]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    @property
    def vector_count(self) -> int:
        return sum(1 + len(chunk.sentences) for chunk in self.chunks.values())

    def lexical_mask(self, rows: np.ndarray) -> np.ndarray:
        """A boolean mask over lexical positions selecting the given row ids.

        ``lexical_rows`` is sorted (rows only grow), so each row is found by bisection.
        """
        mask = np.zeros(len(self.lexical_rows), dtype=bool)
        positions = np.searchsorted(self.lexical_rows, rows)
        found = positions < len(self.lexical_rows)
        found[found] = self.lexical_rows[positions[found]] == rows[found]
        mask[positions[found]] = True
        return mask
