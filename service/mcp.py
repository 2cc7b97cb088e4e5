"""The Model Context Protocol server: the service's search, answers and documents for AI
assistants and agent frameworks, on the official ``mcp`` SDK.

Two tools and one resource, answered exactly as the HTTP API answers:

* ``search_policy(question, top_k, doc_ids)``: what ``POST /v1/ask`` returns (the quoted
  answer or "not stated" with its reasons, and the passages with their citations);
* ``get_document(doc_id)``: what ``GET /v1/documents/{doc_id}`` returns;
* ``policy-qa://catalog``: the catalog, as ``GET /v1/documents`` lists it.

Two transports. Streamable HTTP at ``/mcp`` under the running service (``mount``):
stateless JSON, so any worker answers any request, behind the API's own checks (a
bearer key from ``POLICY_QA_RETRIEVAL_KEYS`` or the admin key, the origin allow-list, the
per-client rate limit). And stdio (``policy-qa-mcp``, or ``python -m service.mcp``) for a
desktop assistant that starts the server itself: it loads the index in-process and speaks
on stdin/stdout, logging to stderr.
"""

from __future__ import annotations

import asyncio
import logging.config
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar

from fastapi import FastAPI, Request
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from index.errors import PolicyQAError
from index.settings import Settings
from service.errors import policy_error_response
from service.guards import RateLimiter, check_caller, require_bearer, retrieval_keys
from service.observability import log_config
from service.routes.ask import answer_question
from service.routes.documents import catalog, document_detail
from service.schemas import (
    AskRequest,
    AskResponse,
    DocId,
    DocIds,
    DocumentDetail,
    DocumentList,
    Question,
    TopK,
)
from service.state import ServiceState

PATH = "/mcp"
CATALOG_URI = "policy-qa://catalog"
INSTRUCTIONS = """\
Bilingual (Chinese / English) search over the Beijing International Sci-Tech Innovation
Center policy documents. search_policy answers a question with a sentence quoted from the
documents, or says the documents do not state it (no_answer, with the reasons), and gives
the passages with document, section and character offsets. get_document returns a
document's text: every offset indexes it. The catalog resource lists the documents."""

T = TypeVar("T")


def build_server(state: ServiceState) -> MCPServer:
    """The MCP server over ``state`` (loaded by the app's lifespan, or by ``main``)."""
    with _logging_left_alone():
        server = MCPServer("policy-qa", instructions=INSTRUCTIONS, version="0.1.0")

    @server.tool()
    async def search_policy(
        question: Question,
        top_k: TopK = 5,
        doc_ids: DocIds = None,
    ) -> AskResponse:
        """Answer a Chinese or English question from the policy documents: the quoted
        answer (or no_answer with the reasons the documents do not state it) and the
        passages it comes from, each with its document, section and character offsets."""

        def ask() -> AskResponse:
            body = AskRequest(question=question, top_k=top_k, doc_ids=doc_ids)
            return answer_question(state.retriever, state.answerer, body)[1]

        return await asyncio.to_thread(_checked, ask)

    @server.tool()
    async def get_document(doc_id: DocId) -> DocumentDetail:
        """A document's catalog entry (titles, issuer, date, number) and its full text,
        which the passages' start and end offsets index."""
        return _checked(lambda: document_detail(state.snapshot, doc_id))

    @server.resource(CATALOG_URI, name="catalog", mime_type="application/json")
    async def list_catalog() -> str:
        """The indexed documents: id, titles, issuer, date, number, size."""
        documents: DocumentList = catalog(state.snapshot)
        return documents.model_dump_json()

    return server


@contextmanager
def _logging_left_alone() -> Iterator[None]:
    """``MCPServer()`` calls ``logging.basicConfig``, which gives the root logger a handler of
    the SDK's own when it has none. Logging is the application's to set up
    (``service.observability``), so the root logger has a handler to show meanwhile."""
    root = logging.getLogger()
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)
    try:
        yield
    finally:
        root.removeHandler(placeholder)


def _checked(make: Callable[[], T]) -> T:
    """``make()``; a refusal (a bad argument, an unknown document) becomes a tool error,
    whose message the assistant sees."""
    try:
        return make()
    except (PolicyQAError, ValueError) as error:
        raise ToolError(str(error)) from error


class McpGuard:
    """The API's checks, before the SDK reads a message: the origin allow-list, the
    per-client rate limit, then a bearer key (a retrieval key or the admin key)."""

    def __init__(self, app: ASGIApp, *, settings: Settings, limiter: RateLimiter) -> None:
        self.app = app
        self.settings = settings
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        try:
            check_caller(request, self.settings, self.limiter)
            require_bearer(
                request.headers.get("authorization"),
                retrieval_keys(self.settings),
                what="the MCP server",
            )
        except PolicyQAError as error:
            await policy_error_response(error, path=PATH)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def mount(app: FastAPI, server: MCPServer, *, settings: Settings, limiter: RateLimiter) -> None:
    """Serve ``server`` at ``/mcp``, guarded; the app's lifespan runs it (``running``)."""

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await server.session_manager.asgi_app(scope, receive, send)

    guarded = McpGuard(endpoint, settings=settings, limiter=limiter)
    app.router.routes.append(Route(PATH, endpoint=guarded, include_in_schema=False))


@asynccontextmanager
async def running(server: MCPServer) -> AsyncIterator[None]:
    """Run the HTTP transport for one lifespan of the app.

    Stateless JSON: every request stands alone, so no session has to stay in one worker
    process. The SDK's own Host/Origin check (meant for local servers without keys) is off:
    the guard checks the origin against the API's allow-list and asks for a key. A session
    manager runs once, so each lifespan gets its own.
    """
    server.streamable_http_app(
        streamable_http_path=PATH,
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    async with server.session_manager.run():
        yield


def main() -> None:
    """stdio, for a desktop assistant that starts the server itself (``policy-qa-mcp``)."""
    settings = Settings()
    logging.config.dictConfig(log_config(settings.log_level))  # stderr: stdout is the protocol
    state = ServiceState(settings)
    state.load()
    if not state.ready:
        raise SystemExit(f"policy-qa: the index cannot be loaded: {state.load_error}")
    build_server(state).run("stdio")


if __name__ == "__main__":
    main()
