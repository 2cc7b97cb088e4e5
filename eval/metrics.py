"""Ranking metrics over binary relevance, plus no-answer detection quality.

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
