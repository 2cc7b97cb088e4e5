"""POST /v1/ask: cited passages and the quoted answer, or why the documents do not say."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from index.answer import Answer, Answerer
from index.answer.messages import not_stated_message
from index.retriever import Retriever, SearchResult
from service.deps import MetricsDep, PublicGuard, StateDep
from service.errors import error_responses
from service.schemas import Answer as AnswerBody
from service.schemas import AskRequest, AskResponse, NotStated, Passage, Quote, ReadingAid, Span
from service.schemas import Finding as FindingBody
from service.schemas import Gloss as GlossBody

router = APIRouter(tags=["ask"], responses=error_responses(400, 403, 413, 422, 429, 503, 504))


@router.post("/v1/ask", response_model=AskResponse, dependencies=[PublicGuard])
async def ask(body: AskRequest, state: StateDep, metrics: MetricsDep) -> AskResponse:
    """Answer a Chinese or English question with passages quoted from the documents."""
    # The model call blocks for milliseconds, and answering may run jieba over sentences
    # it has not seen: both go to the thread pool, in one hop.
    result, response = await asyncio.to_thread(
        answer_question, state.retriever, state.answerer, body
    )
    metrics.observe_stages(result.timings_ms)
    if response.no_answer:
        metrics.no_answer.inc()
    return response


def answer_question(
    retriever: Retriever, answerer: Answerer, body: AskRequest
) -> tuple[SearchResult, AskResponse]:
    """Search, answer, and shape both as the public response."""
    result = retriever.search(body.question, top_k=body.top_k, mode=body.mode, doc_ids=body.doc_ids)
    return result, build_response(body, result, answerer.answer(result))


def build_response(body: AskRequest, result: SearchResult, answer: Answer) -> AskResponse:
    """The public response: passages (with the answer highlighted in them) and the answer,
    or the plain statement that the documents do not state it."""
    highlights: dict[int, list[Span]] = {}
    for quote in answer.quotes:
        if quote.rank:
            highlights.setdefault(quote.rank, []).append(Span(start=quote.start, end=quote.end))
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
            best_sentence=None
            if hit.best_sentence is None
            else Span(start=hit.best_sentence[0], end=hit.best_sentence[1]),
        )
        for rank, hit in enumerate(result.hits, start=1)
    ]
    language = body.lang or result.language.language
    return AskResponse(
        question=body.question,
        language=language,
        language_detail=result.language.detail,
        answer=_answer_body(answer) if answer.stated else None,
        no_answer=not answer.stated,
        not_stated=None
        if answer.stated
        else NotStated(
            message=not_stated_message(answer.findings, language),
            findings=[FindingBody(reason=f.reason.value, detail=f.detail) for f in answer.findings],
        ),
        support=round(answer.support, 4) if answer.support != float("-inf") else -1.0,
        passages=passages,
        expansions=result.expansions,
        timings_ms=result.timings_ms,
    )


def _answer_body(answer: Answer) -> AnswerBody:
    aid = answer.reading_aid
    return AnswerBody(
        text=answer.text,
        citations=answer.citations,
        source=answer.source.value,
        quotes=[
            Quote(doc_id=q.doc_id, start=q.start, end=q.end, text=q.text, rank=q.rank)
            for q in answer.quotes
        ],
        reading_aid=None
        if aid is None
        else ReadingAid(
            terms=[GlossBody(text=g.text, english=g.english) for g in aid.terms],
            figures=[GlossBody(text=g.text, english=g.english) for g in aid.figures],
            catalog=[GlossBody(text=g.text, english=g.english) for g in aid.catalog],
        ),
    )
