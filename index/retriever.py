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
from index.settings import Settings
from index.snapshot import Snapshot, split_vector_id

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


@dataclass(frozen=True)
class SearchResult:
    """Hits plus what the retriever understood of the question."""

    language: QueryLanguage
    expansions: list[str]
    hits: list[Hit]
    best_dense: float | None
    unmatched: list[str] = field(default_factory=list)
    """Names or years in the question that the corpus never mentions."""
    no_answer: bool = False
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
        allowed_rows, lexical_mask = self._filters(snapshot, doc_ids)
        depth = max(self.settings.candidates, top_k)

        dense: list[tuple[int, float]] = []
        best_slot: dict[int, int] = {}
        if mode in ("hybrid", "dense"):
            vector = self.embedder.embed_query(query_text)
            timings["embed"] = _ms_since(clock)
            clock = time.perf_counter()
            allowed_vectors = (
                None if allowed_rows is None else snapshot.vector_ids_for_rows(allowed_rows)
            )
            dense, best_slot = _best_per_passage(
                snapshot.dense.search(vector, depth * VECTORS_PER_PASSAGE, allowed=allowed_vectors)
            )
            dense = dense[:depth]
            timings["dense"] = _ms_since(clock)
            clock = time.perf_counter()
        tokens = self.tokenizer.tokenize(query_text)
        unmatched = [
            anchor
            for anchor in self.tokenizer.anchors(language.text)
            if not snapshot.lexical.knows(anchor) and not self.glossary.knows(anchor)
        ]
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
        hits = [
            self._hit(
                snapshot,
                row,
                score,
                dense_scores.get(row),
                lexical_scores.get(row),
                best_slot.get(row),
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
            unmatched=unmatched,
            no_answer=self._no_answer(language, hits, best_dense, unmatched, bool(lexical)),
            query_terms=tokens,
            timings_ms=timings,
        )

    @staticmethod
    def _lexical(
        snapshot: Snapshot, tokens: list[str], depth: int, mask: np.ndarray | None
    ) -> list[tuple[int, float]]:
        """BM25's best passages as (row, score)."""
        found = snapshot.lexical.search(tokens, k=depth, allowed=mask)
        # One gather, not an element lookup per hit (``lexical_rows`` may be mapped).
        rows = snapshot.lexical_rows[[position for position, _ in found]].tolist()
        return [(row, score) for row, (_, score) in zip(rows, found, strict=True)]

    def _no_answer(
        self,
        language: QueryLanguage,
        hits: list[Hit],
        best_dense: float | None,
        unmatched: list[str],
        lexical_matched: bool,
    ) -> bool:
        """Decide that the corpus does not answer the question.

        On-topic questions about something the documents never name (another city, a
        year they do not cover) are close in meaning to many passages, so a similarity
        threshold alone cannot catch them; a missing name or year can.
        """
        if not hits or unmatched:
            return True
        if best_dense is None:
            return not lexical_matched
        floor = (
            self.settings.no_answer_min_cosine_zh
            if language.language == "zh"
            else self.settings.no_answer_min_cosine_en
        )
        return best_dense < floor

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
    ) -> Hit:
        chunk = snapshot.chunks[row]
        document = snapshot.documents[chunk.doc_id]
        sentence = None
        if slot:  # slot 0 is the whole passage: no single sentence won
            start, end = chunk.sentences[slot - 1]
            sentence = (chunk.start + start, chunk.start + end)
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


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
