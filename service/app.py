"""The application factory: ``uvicorn service.app:create_app --factory``.

Nothing happens at import time; the lifespan loads the model and index once, in a
background thread, so the process answers /healthz immediately, then follows the index:
a version saved by another process (another worker or replica, the CLI) is served within
a second.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from index.embedding import Embedder
from index.settings import Settings
from service import mcp
from service.errors import install_error_handlers
from service.guards import (
    AdminKeyFirstMiddleware,
    BodyLimitMiddleware,
    InFlightLimit,
    RateLimiter,
    TimeoutMiddleware,
    admin_keys,
)
from service.observability import Metrics, RequestContextMiddleware
from service.paths import CollapseSlashesMiddleware
from service.routes import admin, ask, dify, documents, ops, widget
from service.security_headers import SecurityHeadersMiddleware
from service.state import ServiceState

FOLLOW_INTERVAL_S = 0.5
log = logging.getLogger("service.app")
DESCRIPTION = """
Bilingual (中文 / English) question answering over the Beijing International Sci-Tech
Innovation Center policy documents. Every answer is quoted verbatim from the documents,
with document, section and character offsets (`start`/`end` index the text served by
`GET /v1/documents/{doc_id}`).
"""


async def follow_changes(state: ServiceState) -> None:
    """Every ``FOLLOW_INTERVAL_S``, serve the store's current version if it moved (and
    notice a store that went away or came back)."""
    while True:
        await asyncio.sleep(FOLLOW_INTERVAL_S)
        try:
            await asyncio.to_thread(state.check)
        except Exception:  # an unreadable version: keep serving this one, try again later
            log.exception("cannot load the index version the store names")


def create_app(settings: Settings | None = None, *, embedder: Embedder | None = None) -> FastAPI:
    """Build the app.

    Args:
        settings: configuration; read from ``POLICY_QA_*`` environment variables if None.
        embedder: an already loaded model to share (tests load it once per session).
    """
    settings = settings or Settings()
    state = ServiceState(settings, embedder=embedder)
    metrics = Metrics()

    mcp_server = mcp.build_server(state)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(asyncio.to_thread(state.load))
        following = asyncio.create_task(follow_changes(state))
        try:
            async with mcp.running(mcp_server):
                yield
        finally:
            following.cancel()
            if not loading.done():
                await asyncio.shield(loading)

    app = FastAPI(
        title="policy-qa",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = state
    app.state.metrics = metrics
    app.state.rate_limiter = limiter = RateLimiter(
        per_client=settings.rate_limit_per_minute, per_site=settings.site_rate_limit_per_minute
    )
    app.state.retrieval_slots = InFlightLimit(settings.retrieval_max_in_flight)
    install_error_handlers(app)
    for router in (
        ask.router,
        documents.router,
        admin.router,
        dify.router,
        ops.router,
        widget.router,
    ):
        app.include_router(router)
    mcp.mount(app, mcp_server, settings=settings, limiter=limiter)

    # Outermost last: request id and metrics see everything, including 413s and 504s.
    app.add_middleware(TimeoutMiddleware, seconds=settings.request_timeout_s)
    app.add_middleware(AdminKeyFirstMiddleware, keys=admin_keys(settings))
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "X-Site-Key", "X-Request-Id"],
        expose_headers=["X-Request-Id", "Retry-After"],
        max_age=600,
    )
    app.add_middleware(
        SecurityHeadersMiddleware,
        frame_ancestors=settings.cors_origins,
        docs_paths=(app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url),
    )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    app.add_middleware(CollapseSlashesMiddleware)
    return app
