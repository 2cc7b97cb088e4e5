"""POST /v1/ask: cited passages and an extractive answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import APIRouter

from index.retriever import Retriever, SearchResult
from service.answer import extract_answer
from service.deps import MetricsDep, PublicGuard, StateDep
from service.errors import error_responses
from service.schemas import Answer, AskRequest, AskResponse, Passage, Span

router = APIRouter(tags=["ask"], responses=error_responses(400, 403, 413, 422, 429, 503, 504))


@router.post("/v1/ask", response_model=AskResponse, dependencies=[PublicGuard])
async def ask(body: AskRequest, state: StateDep, metrics: MetricsDep) -> AskResponse:
    """Answer a Chinese or English question with passages quoted from the documents."""
    # The model call blocks for milliseconds, and answer extraction may run jieba over
    # sentences it has not seen: both go to the thread pool, in one hop.
    result, response = await asyncio.to_thread(answer_question, state.retriever, body)
    metrics.observe_stages(result.timings_ms)
    if result.no_answer:
        metrics.no_answer.inc()
    return response


def answer_question(retriever: Retriever, body: AskRequest) -> tuple[SearchResult, AskResponse]:
    """Search, then shape the result as the public response."""
    result = retriever.search(body.question, top_k=body.top_k, mode=body.mode, doc_ids=body.doc_ids)
    return result, build_response(body, result, tokenize=retriever.tokenizer.tokenize)


def build_response(
    body: AskRequest, result: SearchResult, *, tokenize: Callable[[str], list[str]]
) -> AskResponse:
    """Shape a search result as the public response (answer only when one exists)."""
    answer = None
    highlights: dict[int, list[Span]] = {}
    if not result.no_answer:
        extracted = extract_answer(result.hits, set(result.query_terms), tokenize)
        if extracted is not None:
            answer = Answer(text=extracted.text, citations=extracted.citations)
            for sentence in extracted.sentences:
                highlights.setdefault(sentence.rank, []).append(
                    Span(start=sentence.start, end=sentence.end)
                )
    passages = [
        Passage(
            rank=rank,
            chunk_id=hit.chunk_id,
            doc_id=hit.doc_id,
            title=hit.title,
            section=hit.section,
            text=hit.text,
            score=hit.score,
            start=hit.start,
            end=hit.end,
            dense_score=hit.dense_score,
            lexical_score=hit.lexical_score,
            highlights=highlights.get(rank, []),
        )
        for rank, hit in enumerate(result.hits, start=1)
    ]
    return AskResponse(
        question=body.question,
        language=body.lang or result.language.language,
        language_detail=result.language.detail,
        answer=answer,
        no_answer=answer is None,
        passages=passages,
        expansions=result.expansions,
        timings_ms=result.timings_ms,
    )
