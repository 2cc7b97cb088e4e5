"""Run gold questions through a retriever (in process or over HTTP) and score them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from statistics import fmean

from tqdm import tqdm

from eval.gold import GoldItem
from eval.metrics import ndcg_at_k, precision_recall, recall_at_k, reciprocal_rank
from index.retriever import Mode

K_VALUES = (1, 3, 5, 10)
DEPTH = 10


@dataclass(frozen=True, slots=True)
class Response:
    """What one question returned: ranked chunk ids and the no-answer verdict."""

    chunk_ids: tuple[str, ...]
    no_answer: bool
    best_dense: float | None = None


AskFn = Callable[[str, Mode], Response]


@dataclass(frozen=True, slots=True)
class Outcome:
    item: GoldItem
    relevant: frozenset[str]
    response: Response

    @property
    def first_relevant_rank(self) -> int | None:
        for rank, chunk_id in enumerate(self.response.chunk_ids, start=1):
            if chunk_id in self.relevant:
                return rank
        return None


def run(
    items: list[GoldItem],
    ask: AskFn,
    relevant: Callable[[GoldItem], set[str]],
    *,
    mode: Mode,
    show_progress: bool = False,
) -> list[Outcome]:
    """Ask every question once in ``mode``."""
    return [
        Outcome(item=item, relevant=frozenset(relevant(item)), response=ask(item.question, mode))
        for item in tqdm(items, desc=f"eval {mode}", unit="q", disable=not show_progress)
    ]


def ranking_metrics(outcomes: Iterable[Outcome]) -> dict[str, float]:
    """Mean Recall@k, MRR@10 and nDCG@10 over answerable questions."""
    answerable = [o for o in outcomes if o.item.answerable]
    if not answerable:
        return {"n": 0}
    metrics: dict[str, float] = {"n": len(answerable)}
    for k in K_VALUES:
        metrics[f"recall@{k}"] = fmean(
            recall_at_k(o.response.chunk_ids, o.relevant, k) for o in answerable
        )
    metrics["mrr@10"] = fmean(
        reciprocal_rank(o.response.chunk_ids, o.relevant, DEPTH) for o in answerable
    )
    metrics["ndcg@10"] = fmean(
        ndcg_at_k(o.response.chunk_ids, o.relevant, DEPTH) for o in answerable
    )
    return metrics


def no_answer_metrics(outcomes: Iterable[Outcome]) -> dict[str, float]:
    """Precision/recall of flagging unanswerable questions as "no answer"."""
    listed = list(outcomes)
    precision, recall = precision_recall(
        [o.response.no_answer for o in listed], [not o.item.answerable for o in listed]
    )
    return {
        "unanswerable": sum(not o.item.answerable for o in listed),
        "no_answer_precision": precision,
        "no_answer_recall": recall,
    }


def breakdown(
    outcomes: list[Outcome], key: Callable[[GoldItem], str]
) -> dict[str, dict[str, float]]:
    """Ranking metrics per group (language, type, ...)."""
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        groups[key(outcome.item)].append(outcome)
    return {name: ranking_metrics(group) for name, group in sorted(groups.items())}


def failures(outcomes: list[Outcome], k: int = 5) -> list[Outcome]:
    """Answerable questions with no relevant passage in the top ``k``."""
    return [
        o
        for o in outcomes
        if o.item.answerable and (o.first_relevant_rank is None or o.first_relevant_rank > k)
    ]
