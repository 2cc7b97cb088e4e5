"""Dify's External Knowledge API, as Dify's own code calls it and reads the answer.

``POST /retrieval`` with ``Authorization: Bearer <key>`` (a key from
``POLICY_QA_RETRIEVAL_KEYS``); ``knowledge_id`` is ``policy-qa`` for the whole corpus or
one document id. Dify applies no threshold of its own to an external knowledge base, so
``score`` is the calibrated relevance (``index.relevance``): at or above 0.5 a passage is
relevant, and a question the answer stage judges not stated scores below it. Records keep
the fused ranking; Dify sorts them by score. Errors speak Dify's dialect (see
``service/errors.py``).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from index.answer import Answer, Answerer
from index.errors import NotFoundError
from index.metadata_filter import Condition, select_documents
from index.relevance import relevance
from index.retriever import Hit, Retriever, SearchResult
from index.searchable import Searchable
from service.deps import RetrievalGuard, RetrievalSlotsDep, StateDep
from service.errors import error_responses
from service.schemas import (
    DifyMetadataCondition,
    DifyRecord,
    DifyRetrievalRequest,
    DifyRetrievalResponse,
)

router = APIRouter(
    tags=["interoperability"],
    dependencies=[RetrievalGuard],
    responses=error_responses(400, 403, 404, 413, 422, 429, 503, 504, dify=True),
)
WHOLE_CORPUS = "policy-qa"
DEFAULT_TOP_K = 5


@router.post("/retrieval", response_model=DifyRetrievalResponse)
async def retrieval(
    body: DifyRetrievalRequest, state: StateDep, slots: RetrievalSlotsDep, request: Request
) -> DifyRetrievalResponse:
    """Passages for a query as Dify's records, those below ``score_threshold`` left out."""
    if not body.query:  # Dify's registration check: nothing asked, nothing found
        return DifyRetrievalResponse(records=[])
    retriever = state.retriever
    doc_ids = knowledge_documents(retriever.snapshot, body.knowledge_id, body.metadata_condition)
    if doc_ids is not None and not doc_ids:  # no document meets the condition
        return DifyRetrievalResponse(records=[])
    setting = body.retrieval_setting
    with slots.slot():  # beyond it, 429 at once: Dify retries it after 0.5, 1 and 2 s
        result, answer = await asyncio.to_thread(
            search_and_answer,
            retriever,
            state.answerer,
            body.query,
            top_k=setting.top_k or DEFAULT_TOP_K,
            doc_ids=doc_ids,
        )
    threshold = setting.score_threshold or 0.0
    return DifyRetrievalResponse(
        records=[
            record(hit, score, result.snapshot, request)
            for hit, score in zip(result.hits, relevance(result, answer), strict=True)
            if score >= threshold
        ]
    )


def knowledge_documents(
    snapshot: Searchable, knowledge_id: str, condition: DifyMetadataCondition | None
) -> list[str] | None:
    """The documents a request searches: its knowledge base's that meet the condition
    (None: the whole corpus, unfiltered).

    Raises:
        NotFoundError: no such knowledge base.
        InvalidInputError: the condition names a field or operator that does not apply.
    """
    if knowledge_id == WHOLE_CORPUS:
        if condition is None:
            return None
        metas = list(snapshot.catalog.values())
    elif knowledge_id in snapshot.catalog:
        metas = [snapshot.catalog[knowledge_id]]
    else:
        raise NotFoundError(f"knowledge {knowledge_id!r} does not exist")
    if condition is None:
        return [meta.id for meta in metas]
    conditions = [Condition(c.name, c.comparison_operator, c.value) for c in condition.conditions]
    return select_documents(metas, conditions, condition.logical_operator)


def search_and_answer(
    retriever: Retriever, answerer: Answerer, query: str, *, top_k: int, doc_ids: list[str] | None
) -> tuple[SearchResult, Answer]:
    """Search, and judge whether the passages state the answer (one thread hop for both)."""
    result = retriever.search(query, top_k=top_k, doc_ids=doc_ids)
    return result, answerer.answer(result)


def record(hit: Hit, score: float, snapshot: Searchable, request: Request) -> DifyRecord:
    """One passage as a Dify record: ``doc_id`` is the passage's own id (Dify folds records
    with the same ``doc_id`` into one), ``document_id`` its document's (Dify cites it)."""
    meta = snapshot.catalog[hit.doc_id]
    url = request.url_for("get_document_chunk", doc_id=hit.doc_id, ordinal=str(hit.ordinal))
    return DifyRecord(
        content=hit.text,
        score=round(score, 4),
        title=hit.title,
        metadata={
            "document_id": hit.doc_id,
            "doc_id": hit.chunk_id,
            "chunk_id": hit.chunk_id,
            "title": hit.title,
            "section": hit.section,
            "start": hit.start,
            "end": hit.end,
            "url": str(url),
            "issuer": meta.issuer,
            "date": meta.date,
        },
    )
