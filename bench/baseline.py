"""The naive tutorial RAG retriever that ``bench.latency`` compares policy-qa against.

Why it exists: "is policy-qa fast?" needs a reference that does the least a retriever can
do with the same model. This is the standard tutorial pipeline, kept deliberately plain:
LangChain ``RecursiveCharacterTextSplitter(chunk_size=500, chunk_overlap=50)`` over the raw
corpus files, the same multilingual-e5-small folder through sentence-transformers with the
e5 ``query: ``/``passage: `` prefixes, a FAISS ``IndexFlatIP`` and one FastAPI endpoint,
``POST /ask {"question", "top_k"}``, returning the top-k texts. No cache, no BM25, no
answer extraction, torch left at its default threads (``BASELINE_TORCH_THREADS`` overrides).

Run: ``uvicorn bench.baseline:create_app --factory`` (reads ``POLICY_QA_CORPUS_DIR`` and
``POLICY_QA_DATA_DIR`` like the service, defaulting to the repository's folders).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

ROOT = Path(__file__).resolve().parents[1]
CHUNK_SIZE = 500
CHUNK_OVERLAP = 50
MODEL_SUBDIR = Path("models") / "multilingual-e5-small"


class AskBody(BaseModel):
    """The tutorial request: a question and how many chunks to return."""

    question: str = Field(min_length=1, max_length=2000)
    top_k: int = Field(5, ge=1, le=50)


class AskReply(BaseModel):
    """The tutorial response: the top-k chunk texts with their scores."""

    question: str
    texts: list[str]
    scores: list[float]


@dataclass
class Pipeline:
    """Model, chunk texts and their FAISS index, built once at start-up."""

    model: Any
    texts: list[str]
    index: Any


def corpus_texts(corpus_dir: Path) -> list[str]:
    """The raw text of every catalogued document, read as files (no normalisation)."""
    catalog = json.loads((corpus_dir / "catalog.json").read_text(encoding="utf-8"))
    return [
        (corpus_dir / entry["source"]).read_text(encoding="utf-8") for entry in catalog["documents"]
    ]


def build_pipeline(corpus_dir: Path, model_dir: Path) -> Pipeline:
    """Split, embed and index the corpus the way the tutorials do."""
    import faiss
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from sentence_transformers import SentenceTransformer

    threads = os.environ.get("BASELINE_TORCH_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
    texts = [chunk for text in corpus_texts(corpus_dir) for chunk in splitter.split_text(text)]
    model = SentenceTransformer(str(model_dir), device="cpu")
    vectors = model.encode(
        texts, prompt="passage: ", normalize_embeddings=True, show_progress_bar=False
    )
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return Pipeline(model=model, texts=texts, index=index)


def create_app() -> FastAPI:
    """Build the baseline app; the pipeline is ready before the port opens."""
    corpus_dir = Path(os.environ.get("POLICY_QA_CORPUS_DIR", ROOT / "corpus"))
    data_dir = Path(os.environ.get("POLICY_QA_DATA_DIR", ROOT / "var"))
    holder: dict[str, Pipeline] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder["pipeline"] = build_pipeline(corpus_dir, data_dir / MODEL_SUBDIR)
        yield

    app = FastAPI(title="tutorial-baseline", lifespan=lifespan)

    @app.get("/readyz")
    def readyz() -> dict[str, object]:
        if "pipeline" not in holder:
            raise HTTPException(status_code=503, detail="loading")
        return {"status": "ready", "chunks": len(holder["pipeline"].texts)}

    @app.post("/ask")
    def ask(body: AskBody) -> AskReply:
        pipeline = holder["pipeline"]
        vector = pipeline.model.encode(
            [body.question], prompt="query: ", normalize_embeddings=True, show_progress_bar=False
        )
        scores, ids = pipeline.index.search(
            np.ascontiguousarray(vector, dtype=np.float32), body.top_k
        )
        hits = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        return AskReply(
            question=body.question,
            texts=[pipeline.texts[i] for i, _ in hits],
            scores=[s for _, s in hits],
        )

    return app
