"""Dify's external-knowledge retrieval contract, so chat front-ends can use policy-qa.

``POST /retrieval`` with ``Authorization: Bearer <key>``; ``knowledge_id`` is
``policy-qa`` for the whole corpus or one document id.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from index.errors import NotFoundError
from service.deps import RetrievalGuard, StateDep
from service.errors import error_responses
from service.schemas import DifyRecord, DifyRetrievalRequest, DifyRetrievalResponse

router = APIRouter(
    tags=["interoperability"],
    dependencies=[RetrievalGuard],
    responses=error_responses(400, 401, 403, 404, 413, 422, 503, 504),
)
WHOLE_CORPUS = "policy-qa"


@router.post("/retrieval", response_model=DifyRetrievalResponse)
async def retrieval(body: DifyRetrievalRequest, state: StateDep) -> DifyRetrievalResponse:
    """Passages for a query in Dify's record format, filtered by its score threshold."""
    retriever = state.retriever
    doc_ids = None
    if body.knowledge_id != WHOLE_CORPUS:
        if body.knowledge_id not in retriever.snapshot.documents:
            raise NotFoundError(f"knowledge {body.knowledge_id!r} does not exist")
        doc_ids = [body.knowledge_id]
    result = await asyncio.to_thread(
        retriever.search, body.query, top_k=body.retrieval_setting.top_k, doc_ids=doc_ids
    )
    return DifyRetrievalResponse(
        records=[
            DifyRecord(
                content=hit.text,
                score=hit.score,
                title=hit.title,
                metadata={
                    "doc_id": hit.doc_id,
                    "chunk_id": hit.chunk_id,
                    "section": hit.section,
                    "start": hit.start,
                    "end": hit.end,
                },
            )
            for hit in result.hits
            if hit.score >= body.retrieval_setting.score_threshold
        ]
    )
