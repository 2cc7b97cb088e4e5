"""Extractive answers: the passage sentences that best answer the question, quoted.

No text is generated: the answer is one or two sentences copied from the returned
passages, each followed by its ``[n]`` citation, with their offsets for highlighting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from index.chunking import sentence_spans
from index.retriever import Hit

# Passages beyond the first few rarely hold the answer and would only add noise.
ANSWER_PASSAGES = 3
# A second sentence joins the answer only when it scores nearly as well as the best.
SECOND_SENTENCE_RATIO = 0.85


@dataclass(frozen=True, slots=True)
class Sentence:
    rank: int
    start: int
    end: int
    text: str
    score: float


@dataclass(frozen=True, slots=True)
class ExtractiveAnswer:
    text: str
    citations: list[int]
    sentences: list[Sentence]


def extract_answer(
    hits: list[Hit], query_terms: set[str], tokenize: Callable[[str], list[str]]
) -> ExtractiveAnswer | None:
    """Pick the answer sentence(s) from the top passages.

    Each sentence scores by the share of query terms it contains, plus a bonus when the
    dense model matched it best within its passage, discounted by the passage's rank.

    Args:
        hits: ranked passages (document offsets in ``start``/``end``).
        query_terms: BM25 terms of the question and its glossary expansions.
        tokenize: the same tokenizer that produced ``query_terms``.

    Returns:
        The answer, or None when there are no passages.
    """
    candidates: list[Sentence] = []
    for rank, hit in enumerate(hits[:ANSWER_PASSAGES], start=1):
        for start, end in sentence_spans(hit.text):
            text = hit.text[start:end]
            terms = _sentence_terms(tokenize, text)
            overlap = len(terms & query_terms) / max(1, len(query_terms))
            absolute = (hit.start + start, hit.start + end)
            dense_bonus = 0.5 if hit.best_sentence == absolute else 0.0
            score = (overlap + dense_bonus) / (1 + 0.25 * (rank - 1))
            candidates.append(Sentence(rank, absolute[0], absolute[1], text, score))
    if not candidates:
        return None
    ordered = sorted(candidates, key=lambda s: s.score, reverse=True)
    chosen = [ordered[0]]
    for sentence in ordered[1:]:
        if sentence.score < SECOND_SENTENCE_RATIO * ordered[0].score:
            break
        if sentence.rank != chosen[0].rank or abs(sentence.start - chosen[0].end) <= 1:
            chosen.append(sentence)
            break
    chosen.sort(key=lambda s: (s.rank, s.start))
    text = "".join(f"{s.text}[{s.rank}]" for s in chosen)
    return ExtractiveAnswer(text=text, citations=sorted({s.rank for s in chosen}), sentences=chosen)


@lru_cache(maxsize=16_384)
def _sentence_terms(tokenize: Callable[[str], list[str]], text: str) -> frozenset[str]:
    """A sentence's terms, cached: the same top passages recur across questions, and
    re-tokenising them was most of a request's CPU outside the model."""
    return frozenset(tokenize(text))
