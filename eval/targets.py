"""What the evaluation asks: the retriever in this process, or a service over HTTP.

Both return the same ``Response`` so their numbers can be compared directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx

from eval.gold import GoldItem, relevant_chunk_ids
from eval.runner import AskFn, Response
from index.chunking import Chunk
from index.documents import Document, DocumentMeta
from index.pipeline import ensure_snapshot, load_components, make_retriever
from index.retriever import Mode, Retriever
from index.settings import Settings
from index.structure import PATH_SEPARATOR

DEPTH = 10


@dataclass(frozen=True)
class Target:
    name: str
    ask: AskFn
    relevant: Callable[[GoldItem], set[str]]


def _relevance(
    documents: dict[str, Document], chunks: list[Chunk]
) -> Callable[[GoldItem], set[str]]:
    return lambda item: relevant_chunk_ids(item, documents, chunks)


def retriever_target(retriever: Retriever) -> Target:
    """Ask a retriever directly (the quality gate in the test suite uses this)."""

    def ask(question: str, mode: Mode) -> Response:
        result = retriever.search(question, top_k=DEPTH, mode=mode)
        return Response(tuple(h.chunk_id for h in result.hits), result.no_answer, result.best_dense)

    snapshot = retriever.snapshot
    return Target("in-process", ask, _relevance(snapshot.documents, list(snapshot.chunks.values())))


def in_process_target(settings: Settings) -> Target:
    parts = load_components(settings)
    snapshot, _ = ensure_snapshot(parts, show_progress=True)
    return retriever_target(make_retriever(parts, snapshot))


def http_target(url: str, *, client: httpx.Client | None = None) -> Target:
    """Ask a running service; evidence is located in the documents it serves."""
    http = client or httpx.Client(base_url=url, timeout=60)

    def ask(question: str, mode: Mode) -> Response:
        reply = http.post("/v1/ask", json={"question": question, "top_k": DEPTH, "mode": mode})
        reply.raise_for_status()
        body = reply.json()
        return Response(tuple(p["chunk_id"] for p in body["passages"]), body["no_answer"])

    documents: dict[str, Document] = {}
    chunks: list[Chunk] = []
    for summary in http.get("/v1/documents").json()["documents"]:
        detail = http.get(f"/v1/documents/{summary['id']}").json()
        meta = DocumentMeta(
            id=detail["id"], title_zh=detail["title_zh"], title_en=detail["title_en"], source=""
        )
        documents[meta.id] = Document(meta=meta, text=detail["text"])
        for c in http.get(f"/v1/documents/{meta.id}/chunks").json()["chunks"]:
            section = tuple(c["section"].split(PATH_SEPARATOR)) if c["section"] else ()
            chunks.append(
                Chunk(
                    chunk_id=c["chunk_id"],
                    doc_id=c["doc_id"],
                    ordinal=c["ordinal"],
                    section=section,
                    start=c["start"],
                    end=c["end"],
                    text=c["text"],
                )
            )
    return Target(f"http {url}", ask, _relevance(documents, chunks))
