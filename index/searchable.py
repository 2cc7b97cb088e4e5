"""What the retriever, the answer stage and the service read from an index.

Two stores implement it: a local snapshot (``index/snapshot.py``: FAISS + the project's
BM25, one process's copy) and a Milvus collection (``index/milvus``: shared by every
replica). The retriever fuses, expands and answers the same way over either, so both
stores rank alike.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from index.chunking import Chunk
from index.documents import Document, DocumentMeta

if TYPE_CHECKING:
    from index.snapshot import Manifest


@dataclass(frozen=True, slots=True)
class Match:
    """A passage one search found: its id, its document, its score and, for a dense search,
    the vector that scored it (slot 0 is the whole passage, slot j its sentence j-1)."""

    chunk_id: str
    doc_id: str
    score: float
    slot: int = 0


class TermStatistics(Protocol):
    """BM25's view of the corpus vocabulary, which the answer stage weighs words by."""

    def idf(self, term: str) -> float: ...

    def knows(self, term: str) -> bool: ...


class Searchable(Protocol):
    """One consistent state of an index: its documents, passages and searches."""

    @property
    def manifest(self) -> Manifest: ...

    @property
    def catalog(self) -> Mapping[str, DocumentMeta]:
        """Every document's metadata (cheap: no text)."""
        ...

    @property
    def documents(self) -> Mapping[str, Document]:
        """Every document with the text offsets refer to (a store may fetch it on access)."""
        ...

    @property
    def lexical(self) -> TermStatistics: ...

    def document_size(self, doc_id: str) -> tuple[int, int]:
        """A document's passages and characters (without fetching its text)."""
        ...

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        """A document's passages in order (empty for an unknown document)."""
        ...

    def chunk_by_id(self, chunk_id: str) -> Chunk | None: ...

    def chunks_by_id(self, chunk_ids: Collection[str]) -> dict[str, Chunk]:
        """The passages with these ids that exist."""
        ...

    def search_dense(
        self, vector: np.ndarray, k: int, *, doc_ids: frozenset[str] | None = None
    ) -> list[Match]:
        """The ``k`` vectors (passages and sentences) nearest a unit query vector, best
        first, as matches of their passages; ``doc_ids`` restricts the search."""
        ...

    def search_lexical(
        self, tokens: list[str], k: int, *, doc_ids: frozenset[str] | None = None
    ) -> list[Match]:
        """The ``k`` passages with the best positive BM25 score for these query terms."""
        ...
