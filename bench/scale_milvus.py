"""The scale benchmark's Milvus rows: the same corpus in the local store and in Milvus Lite.

One phase per size, in a fresh process (``bench.scale`` runs it with ``--phases milvus``):
documents of real corpus sentences (about 20 passages each) until ``n`` passages, with
synthetic vectors (``SyntheticEmbedder``: passages and their sentences, as the service
embeds them). Both stores are built from the same documents by the service's own code
(``LocalStore.build``, ``MilvusStore.build``) and searched by the same ``Retriever``:

* build time (chunk, tokenise, synthetic embed, index; for Milvus also insert and flush);
* p50/p99 of a dense search, a BM25 search and a whole hybrid ``Retriever.search``;
* adding a ~5,000-character document as the admin API does (``prepare_add`` + commit);
* memory: the benchmark process's resident growth for the local store; for Milvus Lite,
  the server's resident memory (the client holds only the catalog and term counts).

Milvus Lite is a Python re-implementation for development: its numbers say what this
machine does with it, not what Milvus Standalone or Distributed would
(docs/performance-scale.md has those expectations, with references).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.scale import (
    DIM,
    QUESTIONS,
    SEED,
    SyntheticEmbedder,
    _unit,
    log,
    memory_mib,
    new_document,
    percentiles,
    real_text,
    synthetic_documents,
    table,
    timed,
)
from bench.server import rss_kb
from index.documents import Document, DocumentMeta
from index.glossary import Glossary
from index.milvus.lite import LiteServer
from index.retriever import Retriever
from index.searchable import Searchable
from index.settings import Settings
from index.stores import LocalStore, Store, open_store


class QueryEmbedder(SyntheticEmbedder):
    """Synthetic passages and questions (a question gets a random unit vector)."""

    precision = "float32"

    def embed_query(self, text: str) -> np.ndarray:
        vector: np.ndarray = _unit(self._rng.standard_normal((1, DIM), dtype=np.float32))[0]
        return vector


def _rss_mib(pid: int) -> float:
    kb = rss_kb(pid)
    return math.nan if kb is None else kb / 1024


def _measure(
    store: Store,
    documents: list[Document],
    *,
    tokenizer: Any,
    glossary: Glossary,
    settings: Settings,
    queries: int,
    pool: Any,
) -> dict[str, Any]:
    embedder: Any = QueryEmbedder(SEED)
    before = memory_mib()["rss"]
    start = time.perf_counter()
    index, _ = store.build(documents, embedder=embedder, tokenizer=tokenizer)
    result: dict[str, Any] = {
        "build_s": time.perf_counter() - start,
        "passages": index.manifest.passages,
        "index_type": index.manifest.index_type,
    }
    result["client_rss_mib"] = memory_mib()["rss"] - before
    retriever = Retriever(
        index, embedder=embedder, tokenizer=tokenizer, glossary=glossary, settings=settings
    )
    vectors = [embedder.embed_query("") for _ in range(queries)]
    terms = [tokenizer.tokenize(q) for q in QUESTIONS]
    depth = settings.candidates
    result["dense"] = percentiles(
        timed(lambda i: index.search_dense(vectors[i % len(vectors)], depth * 6), queries)
    )
    result["lexical"] = percentiles(
        timed(lambda i: index.search_lexical(terms[i % len(terms)], depth), queries)
    )
    result["hybrid"] = percentiles(
        timed(lambda i: retriever.search(QUESTIONS[i % len(QUESTIONS)]), queries)
    )
    added: list[float] = []
    base: Searchable = index
    for number in range(3):
        document = Document(
            meta=DocumentMeta(
                id=f"bench-new-doc-{number}", title_zh="新增", title_en="New", source="-"
            ),
            text=new_document(pool, SEED).text,
        )
        start = time.perf_counter()
        with store.locked():
            pending = store.prepare_add(base, document, embedder=embedder, tokenizer=tokenizer)
            pending.commit()
        added.append(time.perf_counter() - start)
        base = pending.index
    result["add_s"] = float(np.median(added))
    result["adds_s"] = added
    return result


def phase_milvus(n: int, folder: Path, queries: int) -> dict[str, Any]:
    """Both stores at ``n`` passages (see the module docstring)."""
    settings, tokenizer, pool = real_text()
    glossary = Glossary.load(settings.glossary_path)
    documents = synthetic_documents(n, settings, pool)
    log(f"{n:,}: {len(documents):,} documents for the local store and Milvus Lite")

    def measure(store: Store) -> dict[str, Any]:
        return _measure(
            store,
            documents,
            tokenizer=tokenizer,
            glossary=glossary,
            settings=settings,
            queries=queries,
            pool=pool,
        )

    local_settings = settings.model_copy(update={"data_dir": folder / "local"})
    result: dict[str, Any] = {"local": measure(LocalStore(local_settings))}
    log(f"{n:,}: local store measured")
    server = LiteServer(folder / "milvus.db")
    server.start()
    try:
        milvus_settings = settings.model_copy(
            update={
                "store": "milvus",
                "milvus_uri": server.uri,
                "data_dir": folder / "client",
                "milvus_timeout_s": 600.0,
            }
        )
        assert server.process is not None  # noqa: S101 - started above
        result["milvus"] = measure(open_store(milvus_settings))
        result["milvus"]["server_rss_mib"] = _rss_mib(server.process.pid)
    finally:
        server.stop()
    log(f"{n:,}: Milvus Lite measured")
    return result


def milvus_report(n: int, data: dict[str, Any]) -> str:
    """The local and Milvus Lite rows at one size."""
    rows = []
    for name, label in (("local", "local (FAISS + BM25)"), ("milvus", "Milvus Lite")):
        row = data.get(name)
        if not row:
            continue
        memory = row["client_rss_mib"] if name == "local" else row["server_rss_mib"]
        rows.append(
            [
                label,
                row["index_type"],
                row["build_s"],
                f"{row['dense']['p50_ms']:.1f} / {row['dense']['p99_ms']:.1f}",
                f"{row['lexical']['p50_ms']:.1f} / {row['lexical']['p99_ms']:.1f}",
                f"{row['hybrid']['p50_ms']:.1f} / {row['hybrid']['p99_ms']:.1f}",
                row["add_s"],
                memory,
            ]
        )
    headers = [
        f"store, {n:,} passages",
        "dense index",
        "build s",
        "dense p50 / p99 ms",
        "BM25 p50 / p99 ms",
        "hybrid search p50 / p99 ms",
        "add a document s",
        "memory MiB",
    ]
    return table(headers, rows)
