"""The calibrated relevance behind ``/retrieval``'s score: its gate on the gold set at the
documented threshold, the fit worked out by hand, and the not-stated ceiling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eval.calibrate import Scored, at_threshold, collect, fit_logistic, scores
from eval.gold import load_gold
from index import relevance
from index.answer import Answerer
from index.retriever import Retriever

# The acceptance, per split: at the threshold, at least this share of the gold-evidence
# passages in the top 5 kept, and of the unanswerable questions with every passage dropped.
EVIDENCE_KEPT = 0.90
UNANSWERABLE_DROPPED = 0.50


@pytest.fixture(scope="module")
def gold_passages(retriever: Retriever, answerer: Answerer) -> dict[str, list[Scored]]:
    scored = collect(load_gold(), retriever, answerer)
    return {split: [s for s in scored if s.item.split == split] for split in ("dev", "test")}


@pytest.mark.parametrize("split", ["dev", "test"])
def test_the_threshold_separates_relevant_passages(
    gold_passages: dict[str, list[Scored]], split: str
) -> None:
    passages = gold_passages[split]
    p = scores(passages)
    measured = at_threshold(passages, p, relevance.THRESHOLD)
    assert measured["evidence_kept"] >= EVIDENCE_KEPT, measured
    assert measured["unanswerable_all_dropped"] >= UNANSWERABLE_DROPPED, measured
    assert measured["irrelevant_kept"] < 0.15, measured  # and most irrelevant ones go


def test_not_stated_passages_stay_below_the_threshold(
    gold_passages: dict[str, list[Scored]],
) -> None:
    passages = [s for split in gold_passages.values() for s in split]
    p = scores(passages)
    assert any(s.capped for s in passages)
    assert all(q < relevance.THRESHOLD for s, q in zip(passages, p, strict=True) if s.capped)


def test_scores_agree_with_the_service(retriever: Retriever, answerer: Answerer) -> None:
    """The calibration's arithmetic is the service's: ``relevance()`` on a live search."""
    [item] = [i for i in load_gold() if i.id == "dev-zh-001"]
    result = retriever.search(item.question, top_k=10)
    answer = answerer.answer(result)
    served = relevance.relevance(result, answer)
    rows = relevance.passage_features(result, answer)
    scored = [Scored(item, r, row, False, not answer.stated) for r, row in enumerate(rows, 1)]
    assert served == pytest.approx(scores(scored).tolist())
    assert served[0] >= relevance.THRESHOLD and "115家" in result.hits[0].text


def test_fit_by_hand() -> None:
    """One feature, four points: x = 0, 0 are negatives, x = 2, 2 positives. Symmetric
    around x = 1, so the fitted boundary (p = 0.5) is at x = 1: intercept = -weight."""
    x = np.array([[0.0], [0.0], [2.0], [2.0]])
    y = np.array([0.0, 0.0, 1.0, 1.0])
    intercept, weights = fit_logistic(x, y)
    assert weights[0] > 0 and intercept == pytest.approx(-weights[0])
    # Three negatives for one positive: the classes weigh the same in total, so the
    # boundary stays midway between them.
    x = np.array([[0.0], [0.0], [0.0], [2.0]])
    y = np.array([0.0, 0.0, 0.0, 1.0])
    intercept, weights = fit_logistic(x, y)
    assert -intercept / weights[0] == pytest.approx(1.0)


def test_logistic_is_stable_at_the_extremes() -> None:
    assert relevance.logistic(0.0) == 0.5
    assert relevance.logistic(-1000.0) == 0.0 and relevance.logistic(1000.0) == 1.0
    assert relevance.logistic(2.0) == pytest.approx(1 / (1 + math.exp(-2.0)))
