"""How relevant each returned passage is: a calibrated score in [0, 1] that means the same
for every question, so that a caller's threshold means "relevant enough".

The fused score ranks the passages of one question but says nothing across questions: the
first hit scores about 1.0 whatever was asked, the weather included. The relevance of a
passage is a logistic function of what the retriever and the answer stage saw of it (its
rank and fused score, its best sentence's cosine and how far that is from the question's
best, its share of the question's best BM25 score, whether the answer is stated, and
whether the passage holds the quoted answer).

``WEIGHTS`` and ``INTERCEPT`` were fitted on the dev split of the gold set against the
passages that hold each question's evidence (``python -m eval.calibrate``, ``make
calibrate``), with relevant and irrelevant passages weighing the same in total: a passage
at ``THRESHOLD`` (0.5) is as likely to hold the evidence as not, whatever share of the
returned passages do. The held-out test split, and the curve behind the threshold, are in
``var/reports/calibration.md``. A question the answer stage judges not stated gets no
passage at or above the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from index.answer import Answer
    from index.retriever import Hit, SearchResult

THRESHOLD = 0.5
"""The documented operating point: at or above it, a passage is relevant."""
NOT_STATED_CEILING = 0.49
"""The highest relevance a passage gets when the answer stage judges the question not stated."""

FEATURES = (
    "reciprocal_rank",
    "fused",
    "best_sentence",
    "gap_to_best",
    "lexical_share",
    "stated",
    "quoted",
)
# Fitted on the dev split by `make calibrate`; paste its output here to refit.
INTERCEPT = -20.5106
WEIGHTS: dict[str, float] = {
    "reciprocal_rank": 1.1491,
    "fused": -5.9922,
    "best_sentence": 20.5779,
    "gap_to_best": -22.6091,
    "lexical_share": 5.4914,
    "stated": 2.6778,
    "quoted": 4.9635,
}


def passage_features(result: SearchResult, answer: Answer) -> list[dict[str, float]]:
    """The features of each hit of ``result``, in rank order.

    Args:
        result: the search, with each hit's scores.
        answer: the answer stage's verdict on the same result.
    """
    best_dense = result.best_dense or 0.0
    best_lexical = max((hit.lexical_score or 0.0 for hit in result.hits), default=0.0)
    quotes = [(q.doc_id, q.start, q.end) for q in answer.quotes] if answer.stated else []
    rows = []
    for rank, hit in enumerate(result.hits, start=1):
        sentence = best_sentence(hit)
        rows.append(
            {
                "reciprocal_rank": 1.0 / rank,
                "fused": hit.score,
                "best_sentence": sentence,
                "gap_to_best": best_dense - sentence,
                "lexical_share": (hit.lexical_score or 0.0) / best_lexical if best_lexical else 0.0,
                "stated": float(answer.stated),
                "quoted": float(_holds(hit, quotes)),
            }
        )
    return rows


def relevance(result: SearchResult, answer: Answer) -> list[float]:
    """The calibrated relevance of each hit of ``result``, in rank order."""
    return [score(row, stated=answer.stated) for row in passage_features(result, answer)]


def score(features: Mapping[str, float], *, stated: bool) -> float:
    """One passage's calibrated relevance from its features (``passage_features``), capped
    below the threshold when the answer stage judged the question not stated."""
    z = INTERCEPT + sum(WEIGHTS[name] * features[name] for name in FEATURES)
    return min(1.0 if stated else NOT_STATED_CEILING, logistic(z))


def best_sentence(hit: Hit) -> float:
    """The cosine of the passage's sentence closest to the question (or of the passage)."""
    cosines = [c for c in hit.sentence_scores if c is not None]
    if cosines:
        return max(cosines)
    return hit.dense_score or 0.0


def logistic(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)  # never overflows for very negative z
    return e / (1.0 + e)


def _holds(hit: Hit, quotes: list[tuple[str, int, int]]) -> bool:
    return any(d == hit.doc_id and hit.start <= s and e <= hit.end for d, s, e in quotes)
