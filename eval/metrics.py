"""Ranking metrics over binary relevance, answer quality, and no-answer detection.

Kept small and explicit; tests check them against hand-worked values and ir-measures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence, Set


def recall_at_k(ranked: Sequence[str], relevant: Set[str], k: int) -> float:
    """1.0 if any relevant passage is in the top ``k`` (hit rate; gold has one answer)."""
    return 1.0 if any(doc in relevant for doc in ranked[:k]) else 0.0


def reciprocal_rank(ranked: Sequence[str], relevant: Set[str], k: int = 10) -> float:
    """1/rank of the first relevant passage within the top ``k``, else 0."""
    for rank, doc in enumerate(ranked[:k], start=1):
        if doc in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], relevant: Set[str], k: int = 10) -> float:
    """Binary nDCG; the ideal ranking puts min(|relevant|, k) hits first (standard IDCG)."""
    dcg = sum(
        1.0 / math.log2(rank + 1) for rank, doc in enumerate(ranked[:k], start=1) if doc in relevant
    )
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return dcg / ideal if ideal else 0.0


def precision_recall(predicted: Sequence[bool], actual: Sequence[bool]) -> tuple[float, float]:
    """Precision and recall of the positive class (e.g. "no answer")."""
    true_pos = sum(p and a for p, a in zip(predicted, actual, strict=True))
    predicted_pos = sum(predicted)
    actual_pos = sum(actual)
    precision = true_pos / predicted_pos if predicted_pos else 0.0
    recall = true_pos / actual_pos if actual_pos else 0.0
    return precision, recall


MIN_ANSWER_OVERLAP = 0.5
"""Share of an evidence span the answer must quote (see ``answer_holds_evidence``)."""


def answer_holds_evidence(
    quoted: Sequence[tuple[int, int]],
    evidence: Sequence[tuple[int, int]],
    text: str,
    *,
    answer_text: str = "",
) -> bool:
    """Whether an answer quotes the gold evidence.

    The rule, for at least one evidence span (whitespace never counts, because
    PDF-extracted text breaks lines anywhere):

    * the evidence's text is inside the answer's text; or
    * at least ``MIN_ANSWER_OVERLAP`` (half) of the evidence's characters lie inside the
      answer's quoted spans: an evidence span may run over two sentences, and a quote of
      the one holding the fact states it.

    Args:
        quoted: the answer's (start, end) spans in the gold document.
        evidence: the evidence's (start, end) spans in the same document.
        text: that document's text.
        answer_text: the answer's quoted text (the same words may stand elsewhere too, as
            a title does).
    """
    answer = "".join(answer_text.split())
    for start, end in evidence:
        needed = [i for i in range(start, end) if not text[i].isspace()]
        if needed and "".join(text[i] for i in needed) in answer:
            return True
        inside = sum(1 for i in needed if any(a <= i < b for a, b in quoted))
        if needed and inside >= MIN_ANSWER_OVERLAP * len(needed):
            return True
    return False


def f1(precision: float, recall: float) -> float:
    """Harmonic mean of precision and recall (0 when both are 0)."""
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def precision_recall_curve(
    scores: Sequence[float], positive: Sequence[bool]
) -> list[tuple[float, float, float]]:
    """(threshold, precision, recall) for flagging every item scoring below each threshold.

    Thresholds are the distinct scores plus one above the highest, ascending; an item with
    score ``-inf`` is flagged at every threshold.
    """
    finite = sorted({s for s in scores if s != float("-inf")})
    thresholds = [*finite, (finite[-1] + 1.0) if finite else 0.0]
    curve = []
    for threshold in thresholds:
        flagged = [score < threshold for score in scores]
        precision, recall = precision_recall(flagged, positive)
        curve.append((threshold, precision, recall))
    return curve
