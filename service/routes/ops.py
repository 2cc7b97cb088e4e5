"""Probes and metrics for operators."""

from __future__ import annotations

import os

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from index.errors import IndexNotReadyError, IndexUnavailableError
from service.deps import MetricsDep, StateDep
from service.errors import error_responses

router = APIRouter(tags=["operations"], responses=error_responses(504))


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (it may still be loading the index)."""
    return {"status": "ok"}


@router.get("/readyz", responses=error_responses(503))
async def readyz(state: StateDep) -> dict[str, object]:
    """200 once the index is loaded and answering; 503 before, if loading failed, or while
    the index store (Milvus) cannot be reached."""
    if state.unavailable is not None:
        raise IndexUnavailableError(f"index not ready ({state.unavailable})")
    if not state.ready:
        detail = f"loading failed: {state.load_error}" if state.load_error else "loading"
        raise IndexNotReadyError(f"index not ready ({detail})")
    snapshot = state.snapshot
    return {
        "status": "ready",
        "store": state.settings.store,
        "version": state.version,
        "worker": os.getpid(),
        "documents": len(snapshot.catalog),
        "passages": snapshot.manifest.passages,
        "precision": state.retriever.embedder.precision,
    }


@router.get("/metrics", include_in_schema=False)
async def metrics(collectors: MetricsDep) -> Response:
    return Response(generate_latest(collectors.registry), media_type=CONTENT_TYPE_LATEST)
