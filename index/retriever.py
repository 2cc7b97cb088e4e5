"""Question in, ranked passages out: dense + BM25, fused by weighted reciprocal rank.

English questions are expanded with the glossary's Chinese terms so BM25 can match the
Chinese passages, and Chinese questions with the documents' terms for everyday wording;
the dense model sees the question plus the same terms.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from index.embedding import Embedder
from index.errors import InvalidInputError
from index.glossary import Glossary
from index.language import QueryLanguage, detect_language
from index.lexical import Tokenizer
from index.references import DocumentKinds, References
from index.settings import Settings
from index.snapshot import Snapshot, split_vector_id, vector_ids

Mode = Literal["hybrid", "dense", "lexical"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "lexical")
# Dense hits are sentences; fetch enough of them to cover ``candidates`` distinct passages.
VECTORS_PER_PASSAGE = 6


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved passage with everything a citation needs."""

    chunk_id: str
    doc_id: str
    title: str
    section: str
    text: str
    start: int
    end: int
    score: float
    dense_score: float | None = None
    lexical_score: float | None = None
    best_sentence: tuple[int, int] | None = None
    """Document offsets of the sentence that matched the question best (dense modes)."""
    sentence_scores: tuple[float | None, ...] = ()
    """Cosine of each sentence (``sentence_spans(text)`` order) to the question, where the
    dense search reached it; None where it did not (or in lexical mode)."""


@dataclass(frozen=True)
class SearchResult:
    """Hits plus what the retriever understood of the question."""

    language: QueryLanguage
    expansions: list[str]
    hits: list[Hit]
    best_dense: float | None
    snapshot: Snapshot
    """The snapshot that was searched: what the hits' offsets and statistics refer to."""
    references: References = field(default_factory=References.none)
    """The documents the question names by kind ("the work plan")."""
    query_terms: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)


def expand_question(
    question: str, glossary: Glossary, *, enabled: bool = True
) -> tuple[QueryLanguage, list[str], str]:
    """The question as it is searched: its language (and Simplified text), the glossary
    terms it gains, and the text both retrievers see (the two joined).

    Glossary terms anchor an English question in the documents' own vocabulary, and
    everyday Chinese wording in the documents' terms.
    """
    language = detect_language(question)
    expansions = glossary.expand(language.text) if enabled else []
    return language, expansions, " ".join([language.text, *expansions])


def weighted_rrf(rankings: Iterable[tuple[float, list[int]]], *, k: int) -> list[tuple[int, float]]:
    """Weighted reciprocal-rank fusion, normalised so 1.0 means "first everywhere".

    Args:
        rankings: (weight, row ids best first) per retriever.
        k: the RRF constant; larger flattens the rank curve.

    Returns:
        (row id, fused score) pairs, best first; ties keep first-seen order.
    """
    fused: dict[int, float] = {}
    total_weight = 0.0
    for weight, rows in rankings:
        total_weight += weight
        for rank, row in enumerate(rows, start=1):
            fused[row] = fused.get(row, 0.0) + weight / (k + rank)
    best_possible = total_weight / (k + 1) if total_weight else 1.0
    return sorted(
        ((row, score / best_possible) for row, score in fused.items()),
        key=lambda item: item[1],
        reverse=True,
    )


class Retriever:
    """Searches whichever snapshot it currently holds; ``use`` swaps it atomically."""

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        embedder: Embedder,
        tokenizer: Tokenizer,
        glossary: Glossary,
        settings: Settings,
    ) -> None:
        self.snapshot = snapshot
        self.embedder = embedder
        self.tokenizer = tokenizer
        self.glossary = glossary
        self.settings = settings
        self._kinds: tuple[Snapshot, DocumentKinds] | None = None

    def use(self, snapshot: Snapshot) -> None:
        """Serve ``snapshot`` from now on; in-flight searches finish on the old one."""
        self.snapshot = snapshot

    def search(
        self,
        question: str,
        *,
        top_k: int = 5,
        mode: Mode = "hybrid",
        doc_ids: Iterable[str] | None = None,
    ) -> SearchResult:
        """Rank passages for a question.

        Args:
            question: Chinese (Simplified or Traditional), English or mixed text.
            top_k: how many hits to return.
            mode: ``hybrid`` (fused), ``dense`` or ``lexical``.
            doc_ids: restrict to these documents.

        Raises:
            InvalidInputError: unknown document id or mode.
        """
        if mode not in MODES:
            raise InvalidInputError(f"mode must be one of {', '.join(MODES)}")
        snapshot = self.snapshot  # one consistent snapshot for the whole search
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        language, expansions, query_text = expand_question(
            question, self.glossary, enabled=self.settings.glossary_expansion
        )
        references = self.document_kinds(snapshot).named(language.text, language.language)
        # Terms that only name a document ("the work plan" → its title) would find its title
        # page; the named document is preferred in the fusion instead.
        expansions = [term for term in expansions if not references.is_naming(term)]
        query_text = " ".join([language.text, *expansions])
        allowed_rows, lexical_mask = self._filters(snapshot, doc_ids)
        depth = max(self.settings.candidates, top_k)

        dense: list[tuple[int, float]] = []
        best_slot: dict[int, int] = {}
        vector_scores: dict[int, float] = {}
        if mode in ("hybrid", "dense"):
            vector = self.embedder.embed_query(query_text)
            timings["embed"] = _ms_since(clock)
            clock = time.perf_counter()
            allowed_vectors = (
                None if allowed_rows is None else snapshot.vector_ids_for_rows(allowed_rows)
            )
            vector_hits = snapshot.dense.search(
                vector, depth * VECTORS_PER_PASSAGE, allowed=allowed_vectors
            )
            vector_scores = dict(vector_hits)
            dense, best_slot = _best_per_passage(vector_hits)
            dense = dense[:depth]
            timings["dense"] = _ms_since(clock)
            clock = time.perf_counter()
        tokens = self.tokenizer.tokenize(query_text)
        lexical: list[tuple[int, float]] = []
        if mode in ("hybrid", "lexical"):
            lexical = self._lexical(snapshot, tokens, depth, lexical_mask)
            timings["lexical"] = _ms_since(clock)
            clock = time.perf_counter()

        dense_scores = dict(dense)
        lexical_scores = dict(lexical)
        if mode == "dense":
            ranked = dense
        elif mode == "lexical":
            ranked = lexical
        else:
            ranked = weighted_rrf(
                [
                    (self.settings.dense_weight, [row for row, _ in dense]),
                    (self.settings.lexical_weight, [row for row, _ in lexical]),
                ],
                k=self.settings.rrf_k,
            )
            ranked = _prefer(ranked, snapshot, references, self.settings.named_document_bonus)
        hits = [
            self._hit(
                snapshot,
                row,
                score,
                dense_scores.get(row),
                lexical_scores.get(row),
                best_slot.get(row),
                vector_scores,
            )
            for row, score in ranked[:top_k]
        ]
        timings["fuse"] = _ms_since(clock)
        best_dense = dense[0][1] if dense else None
        return SearchResult(
            language=language,
            expansions=expansions,
            hits=hits,
            best_dense=best_dense,
            snapshot=snapshot,
            references=references,
            query_terms=tokens,
            timings_ms=timings,
        )

    def document_kinds(self, snapshot: Snapshot) -> DocumentKinds:
        """The catalog's documents by kind, worked out once per snapshot."""
        cached = self._kinds
        if cached is None or cached[0] is not snapshot:
            cached = (snapshot, DocumentKinds(d.meta for d in snapshot.documents.values()))
            self._kinds = cached
        return cached[1]

    @staticmethod
    def _lexical(
        snapshot: Snapshot, tokens: list[str], depth: int, mask: np.ndarray | None
    ) -> list[tuple[int, float]]:
        """BM25's best passages as (row, score)."""
        found = snapshot.lexical.search(tokens, k=depth, allowed=mask)
        # One gather, not an element lookup per hit (``lexical_rows`` may be mapped).
        rows = snapshot.lexical_rows[[position for position, _ in found]].tolist()
        return [(row, score) for row, (_, score) in zip(rows, found, strict=True)]

    @staticmethod
    def _filters(
        snapshot: Snapshot, doc_ids: Iterable[str] | None
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        if doc_ids is None:
            return None, None
        wanted = set(doc_ids)
        unknown = sorted(wanted - snapshot.documents.keys())
        if unknown:
            raise InvalidInputError(f"unknown document id(s): {', '.join(unknown)}")
        rows = snapshot.rows_for_documents(wanted)
        return rows, snapshot.lexical_mask(rows)

    @staticmethod
    def _hit(
        snapshot: Snapshot,
        row: int,
        score: float,
        dense: float | None,
        lexical: float | None,
        slot: int | None,
        vector_scores: dict[int, float],
    ) -> Hit:
        chunk = snapshot.chunks[row]
        document = snapshot.documents[chunk.doc_id]
        spans = chunk.sentences
        sentence = None
        if slot:  # slot 0 is the whole passage: no single sentence won
            start, end = spans[slot - 1]
            sentence = (chunk.start + start, chunk.start + end)
        ids = vector_ids(row, 1 + len(spans))[1:].tolist()
        sentence_scores = tuple(
            None if (cosine := vector_scores.get(i)) is None else round(cosine, 6) for i in ids
        )
        return Hit(
            chunk_id=chunk.chunk_id,
            doc_id=chunk.doc_id,
            title=document.meta.title,
            section=chunk.section_label,
            text=chunk.text,
            start=chunk.start,
            end=chunk.end,
            score=round(score, 6),
            dense_score=None if dense is None else round(dense, 6),
            lexical_score=None if lexical is None else round(lexical, 6),
            best_sentence=sentence,
            sentence_scores=sentence_scores,
        )


def _best_per_passage(
    vector_hits: list[tuple[int, float]],
) -> tuple[list[tuple[int, float]], dict[int, int]]:
    """Score each passage by its best vector; remember which vector (sentence) won."""
    best: dict[int, float] = {}
    slots: dict[int, int] = {}
    for vector_id, score in vector_hits:
        row, slot = split_vector_id(vector_id)
        if row not in best:
            best[row] = score
            slots[row] = slot
    return list(best.items()), slots


def _prefer(
    ranked: list[tuple[int, float]], snapshot: Snapshot, references: References, bonus: float
) -> list[tuple[int, float]]:
    """Fused scores with ``bonus`` added for passages of the documents the question names."""
    if not references.documents or not bonus:
        return ranked
    named = references.documents
    scored = [
        (row, min(1.0, score + bonus) if snapshot.chunks[row].doc_id in named else score)
        for row, score in ranked
    ]
    return sorted(scored, key=lambda item: item[1], reverse=True)


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
