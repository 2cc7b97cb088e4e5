"""Run gold questions through the service (in process or over HTTP) and score them: the
passages it ranks, and the answer line a reader sees."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from statistics import fmean, median

from tqdm import tqdm

from eval.gold import GoldItem, evidence_spans, relevant_chunk_ids
from eval.metrics import (
    answer_holds_evidence,
    f1,
    ndcg_at_k,
    precision_recall,
    precision_recall_curve,
    recall_at_k,
    reciprocal_rank,
)
from index.chunking import Chunk
from index.documents import Document
from index.retriever import Mode

K_VALUES = (1, 3, 5, 10)
DEPTH = 10
_CITATION = re.compile(r"\[\d+\]")


@dataclass(frozen=True, slots=True)
class Response:
    """What one question returned: ranked passages, and the answer or "not stated"."""

    chunk_ids: tuple[str, ...]
    no_answer: bool
    answer_text: str = ""
    quotes: tuple[tuple[str, int, int], ...] = ()
    """(doc_id, start, end) of each quoted piece of the answer."""
    support: float = 0.0
    vetoed: bool = False
    """"Not stated" for a reason other than a low support (an unknown name, a year, ...)."""

    @property
    def no_answer_score(self) -> float:
        """Lower means "not stated": the support, or -inf when a check ruled it out."""
        return float("-inf") if self.vetoed else self.support


AskFn = Callable[[str, Mode], Response]


@dataclass(frozen=True)
class Target:
    """What is evaluated, and the documents and passages it serves."""

    name: str
    ask: AskFn
    documents: dict[str, Document]
    chunks: list[Chunk]


@dataclass(frozen=True, slots=True)
class Outcome:
    item: GoldItem
    relevant: frozenset[str]
    response: Response
    holds_evidence: bool
    """The answer quotes the gold evidence (``answer_holds_evidence``)."""

    @property
    def first_relevant_rank(self) -> int | None:
        for rank, chunk_id in enumerate(self.response.chunk_ids, start=1):
            if chunk_id in self.relevant:
                return rank
        return None

    @property
    def answer_chars(self) -> int:
        """Length of the answer a reader sees, without its citation markers."""
        return len(_CITATION.sub("", self.response.answer_text))


def run(
    items: list[GoldItem], target: Target, *, mode: Mode, show_progress: bool = False
) -> list[Outcome]:
    """Ask every question once in ``mode``."""
    return [
        score(item, target, target.ask(item.question, mode))
        for item in tqdm(items, desc=f"eval {mode}", unit="q", disable=not show_progress)
    ]


def score(item: GoldItem, target: Target, response: Response) -> Outcome:
    """What one response gets right: its relevant passages and whether it quotes the
    evidence."""
    holds = False
    if item.doc_id is not None and item.doc_id in target.documents and not response.no_answer:
        quoted = [(s, e) for doc, s, e in response.quotes if doc == item.doc_id]
        spans = evidence_spans(item, target.documents)
        words = "".join(target.documents[d].text[s:e] for d, s, e in response.quotes)
        text = target.documents[item.doc_id].text
        holds = answer_holds_evidence(quoted, spans, text, answer_text=words)
    relevant = relevant_chunk_ids(item, target.documents, target.chunks)
    return Outcome(item, frozenset(relevant), response, holds)


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


def answer_metrics(outcomes: Iterable[Outcome]) -> dict[str, float]:
    """The answer line: how often it quotes the evidence, how long it is, and how well
    "not stated" separates unanswerable questions from answerable ones."""
    listed = list(outcomes)
    answerable = [o for o in listed if o.item.answerable]
    answered = [o for o in listed if not o.response.no_answer]
    precision, recall = precision_recall(
        [o.response.no_answer for o in listed], [not o.item.answerable for o in listed]
    )
    lengths = [o.answer_chars for o in answered]
    return {
        "answerable": len(answerable),
        "unanswerable": len(listed) - len(answerable),
        "answer_holds_evidence": fmean(o.holds_evidence for o in answerable) if answerable else 0,
        "answer_chars_median": median(lengths) if lengths else 0,
        "answer_chars_mean": fmean(lengths) if lengths else 0,
        "no_answer_precision": precision,
        "no_answer_recall": recall,
        "no_answer_f1": f1(precision, recall),
        "wrongly_flagged": fmean(o.response.no_answer for o in answerable) if answerable else 0,
    }


def no_answer_curve(outcomes: Sequence[Outcome]) -> list[tuple[float, float, float]]:
    """Precision and recall of "not stated" as its support threshold moves."""
    return precision_recall_curve(
        [o.response.no_answer_score for o in outcomes], [not o.item.answerable for o in outcomes]
    )


def breakdown(
    outcomes: list[Outcome], key: Callable[[GoldItem], str]
) -> dict[str, dict[str, float]]:
    """Ranking and answer metrics per group (language, type, ...)."""
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        groups[key(outcome.item)].append(outcome)
    return {
        name: {**ranking_metrics(group), **answer_metrics(group)}
        for name, group in sorted(groups.items())
    }


def failures(outcomes: list[Outcome], k: int = 5) -> list[Outcome]:
    """Answerable questions with no relevant passage in the top ``k``."""
    return [
        o
        for o in outcomes
        if o.item.answerable and (o.first_relevant_rank is None or o.first_relevant_rank > k)
    ]


def answer_failures(outcomes: list[Outcome]) -> list[Outcome]:
    """Answers that miss the evidence, and unanswerable questions that got an answer."""
    return [
        o
        for o in outcomes
        if (o.item.answerable and not o.holds_evidence)
        or (not o.item.answerable and not o.response.no_answer)
    ]
