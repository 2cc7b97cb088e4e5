"""What the evaluation asks: the retriever and answer stage in this process, or a service
over HTTP.

Both return the same ``Response``, so their numbers can be compared directly; both go
through the same answer stage the widget's answers come from.
"""

from __future__ import annotations

import time

import httpx

from eval.runner import DEPTH, Response, Target
from index.answer import Answerer, Reason
from index.chunking import Chunk
from index.documents import Document, DocumentMeta
from index.pipeline import ensure_snapshot, load_components, make_answerer, make_retriever
from index.retriever import Mode, Retriever
from index.searchable import Searchable
from index.settings import Settings
from index.structure import PATH_SEPARATOR

RATE_LIMIT_RETRIES = 10


def local_target(retriever: Retriever, answerer: Answerer) -> Target:
    """Ask the retriever and answer stage directly (the quality gate in the tests)."""

    def ask(question: str, mode: Mode) -> Response:
        result = retriever.search(question, top_k=DEPTH, mode=mode)
        answer = answerer.answer(result)
        return Response(
            chunk_ids=tuple(h.chunk_id for h in result.hits),
            no_answer=not answer.stated,
            answer_text=answer.text if answer.stated else "",
            quotes=tuple((q.doc_id, q.start, q.end) for q in answer.quotes),
            support=answer.support,
            vetoed=any(f.reason is not Reason.WEAK for f in answer.findings),
        )

    return Target("in-process", ask, *documents_and_passages(retriever.snapshot))


def documents_and_passages(snapshot: Searchable) -> tuple[dict[str, Document], list[Chunk]]:
    """Every document's text and every passage: what gold evidence is located in."""
    chunks = [chunk for doc_id in snapshot.catalog for chunk in snapshot.chunks_of(doc_id)]
    return dict(snapshot.documents), chunks


def in_process_target(settings: Settings) -> Target:
    parts = load_components(settings)
    snapshot, _ = ensure_snapshot(parts, show_progress=True)
    return local_target(make_retriever(parts, snapshot), make_answerer(parts))


def http_target(url: str, *, client: httpx.Client | None = None) -> Target:
    """Ask a running service; evidence is located in the documents it serves."""
    http = client or httpx.Client(base_url=url, timeout=60)

    def ask(question: str, mode: Mode) -> Response:
        body = {"question": question, "top_k": DEPTH, "mode": mode}
        reply = http.post("/v1/ask", json=body)
        for _ in range(RATE_LIMIT_RETRIES):  # a service's rate limit is waited out, not hit
            if reply.status_code != 429:
                break
            time.sleep(float(reply.headers.get("Retry-After", "1")))
            reply = http.post("/v1/ask", json=body)
        reply.raise_for_status()
        body = reply.json()
        answer = body["answer"] or {}
        findings = (body.get("not_stated") or {}).get("findings", [])
        return Response(
            chunk_ids=tuple(p["chunk_id"] for p in body["passages"]),
            no_answer=body["no_answer"],
            answer_text=answer.get("text", ""),
            quotes=tuple((q["doc_id"], q["start"], q["end"]) for q in answer.get("quotes", [])),
            support=body["support"],
            vetoed=any(f["reason"] != Reason.WEAK for f in findings),
        )

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
    return Target(f"http {url}", ask, documents, chunks)
