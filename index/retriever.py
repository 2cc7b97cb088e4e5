"""Question in, ranked passages out: dense + BM25, fused by weighted reciprocal rank.

English questions are expanded with the glossary's Chinese terms so BM25 can match the
Chinese passages, and Chinese questions with the documents' terms for everyday wording;
the dense model sees the question plus the same terms.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from index.chunking import Chunk
from index.embedding import Embedder
from index.errors import InvalidInputError
from index.glossary import Glossary
from index.language import QueryLanguage, detect_language
from index.lexical import Tokenizer
from index.references import DocumentKinds, References
from index.searchable import Match, Searchable
from index.settings import Settings

Mode = Literal["hybrid", "dense", "lexical"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "lexical")
# Dense hits are sentences; fetch enough of them to cover ``candidates`` distinct passages.
VECTORS_PER_PASSAGE = 6
Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved passage with everything a citation needs."""

    chunk_id: str
    doc_id: str
    ordinal: int
    """The passage's position in its document (``/v1/documents/{doc_id}/chunks/{ordinal}``)."""
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
    snapshot: Searchable
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


def weighted_rrf(
    rankings: Iterable[tuple[float, Sequence[Key]]], *, k: int
) -> list[tuple[Key, float]]:
    """Weighted reciprocal-rank fusion, normalised so 1.0 means "first everywhere".

    Args:
        rankings: (weight, passage keys best first) per retriever.
        k: the RRF constant; larger flattens the rank curve.

    Returns:
        (key, fused score) pairs, best first; ties keep first-seen order.
    """
    fused: dict[Key, float] = {}
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
        snapshot: Searchable,
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
        self._kinds: tuple[Searchable, DocumentKinds] | None = None

    def use(self, snapshot: Searchable) -> None:
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
        doc_filter = self._filter(snapshot, doc_ids)
        depth = max(self.settings.candidates, top_k)

        dense: list[Match] = []
        best_vector: dict[str, Match] = {}
        vector_scores: dict[tuple[str, int], float] = {}
        if mode in ("hybrid", "dense"):
            vector = self.embedder.embed_query(query_text)
            timings["embed"] = _ms_since(clock)
            clock = time.perf_counter()
            vector_hits = snapshot.search_dense(
                vector, depth * VECTORS_PER_PASSAGE, doc_ids=doc_filter
            )
            vector_scores = {(m.chunk_id, m.slot): m.score for m in vector_hits}
            best_vector = _best_per_passage(vector_hits)
            dense = list(best_vector.values())[:depth]
            timings["dense"] = _ms_since(clock)
            clock = time.perf_counter()
        tokens = self.tokenizer.tokenize(query_text)
        lexical: list[Match] = []
        if mode in ("hybrid", "lexical"):
            lexical = snapshot.search_lexical(tokens, depth, doc_ids=doc_filter)
            timings["lexical"] = _ms_since(clock)
            clock = time.perf_counter()

        dense_by_id = {m.chunk_id: m for m in dense}
        lexical_by_id = {m.chunk_id: m for m in lexical}
        ranked: list[tuple[str, float]]
        if mode == "dense":
            ranked = [(m.chunk_id, m.score) for m in dense]
        elif mode == "lexical":
            ranked = [(m.chunk_id, m.score) for m in lexical]
        else:
            ranked = weighted_rrf(
                [
                    (self.settings.dense_weight, [m.chunk_id for m in dense]),
                    (self.settings.lexical_weight, [m.chunk_id for m in lexical]),
                ],
                k=self.settings.rrf_k,
            )
            doc_of = {m.chunk_id: m.doc_id for m in (*lexical, *dense)}
            ranked = _prefer(ranked, doc_of, references, self.settings.named_document_bonus)
        chosen = ranked[:top_k]
        chunks = snapshot.chunks_by_id([chunk_id for chunk_id, _ in chosen])
        hits = [
            self._hit(
                snapshot,
                chunks[chunk_id],
                score,
                dense_by_id.get(chunk_id),
                lexical_by_id.get(chunk_id),
                best_vector.get(chunk_id),
                vector_scores,
            )
            for chunk_id, score in chosen
            if chunk_id in chunks  # a passage removed since the search found it
        ]
        timings["fuse"] = _ms_since(clock)
        best_dense = dense[0].score if dense else None
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

    def document_kinds(self, snapshot: Searchable) -> DocumentKinds:
        """The catalog's documents by kind, worked out once per snapshot."""
        cached = self._kinds
        if cached is None or cached[0] is not snapshot:
            cached = (snapshot, DocumentKinds(snapshot.catalog.values()))
            self._kinds = cached
        return cached[1]

    @staticmethod
    def _filter(snapshot: Searchable, doc_ids: Iterable[str] | None) -> frozenset[str] | None:
        if doc_ids is None:
            return None
        wanted = frozenset(doc_ids)
        unknown = sorted(wanted - snapshot.catalog.keys())
        if unknown:
            raise InvalidInputError(f"unknown document id(s): {', '.join(unknown)}")
        return wanted

    @staticmethod
    def _hit(
        snapshot: Searchable,
        chunk: Chunk,
        score: float,
        dense: Match | None,
        lexical: Match | None,
        best_vector: Match | None,
        vector_scores: dict[tuple[str, int], float],
    ) -> Hit:
        spans = chunk.sentences
        sentence = None
        if best_vector is not None and best_vector.slot:  # slot 0: the passage as a whole won
            start, end = spans[best_vector.slot - 1]
            sentence = (chunk.start + start, chunk.start + end)
        sentence_scores = tuple(
            None
            if (cosine := vector_scores.get((chunk.chunk_id, slot))) is None
            else round(cosine, 6)
            for slot in range(1, len(spans) + 1)
        )
        return Hit(
            chunk_id=chunk.chunk_id,
            doc_id=chunk.doc_id,
            ordinal=chunk.ordinal,
            title=snapshot.catalog[chunk.doc_id].title,
            section=chunk.section_label,
            text=chunk.text,
            start=chunk.start,
            end=chunk.end,
            score=round(score, 6),
            dense_score=None if dense is None else round(dense.score, 6),
            lexical_score=None if lexical is None else round(lexical.score, 6),
            best_sentence=sentence,
            sentence_scores=sentence_scores,
        )


def _best_per_passage(vector_hits: list[Match]) -> dict[str, Match]:
    """Each passage once, best first, scored by its best vector (which names the winning
    sentence)."""
    best: dict[str, Match] = {}
    for match in vector_hits:
        best.setdefault(match.chunk_id, match)
    return best


def _prefer(
    ranked: list[tuple[str, float]], doc_of: dict[str, str], references: References, bonus: float
) -> list[tuple[str, float]]:
    """Fused scores with ``bonus`` added for passages of the documents the question names."""
    if not references.documents or not bonus:
        return ranked
    named = references.documents
    scored = [
        (chunk_id, min(1.0, score + bonus) if doc_of[chunk_id] in named else score)
        for chunk_id, score in ranked
    ]
    return sorted(scored, key=lambda item: item[1], reverse=True)


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
