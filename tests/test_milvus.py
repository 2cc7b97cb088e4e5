"""The Milvus store on real Milvus Lite servers: the same ranking as the local store, the
manifest checks, outages, and two service processes sharing one collection."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from bench.server import free_port, uvicorn_process
from index.changes import DocumentChanges
from index.documents import DocumentMeta, load_catalog, parse_document
from index.embedding import Embedder
from index.errors import IndexIntegrityError, IndexUnavailableError, NotFoundError
from index.milvus.lite import LiteServer
from index.milvus.store import MilvusStore
from index.pipeline import Components, ensure_snapshot, load_components
from index.retriever import Mode, Retriever
from index.searchable import Searchable
from index.settings import Settings
from index.snapshot import Snapshot
from tests.apps import StartApp
from tests.conftest import MilvusSettings

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": "Bearer test-admin-key"}
WAIT_S = 30.0
"""How long a test waits for something that should happen within seconds (a bound, so a
broken build fails instead of hanging; the benchmark reports how long it really takes)."""
QUESTION = "墨子量子实验室要建成什么平台？"
QUANTUM = (
    "一、总体要求\n为加快建设量子信息科学中心，制定本方案。\n"
    "二、主要措施\n支持墨子量子实验室建设量子计算原型机，到2027年建成百比特级量子计算平台。"
)


def until(
    check: Callable[[], bool], timeout_s: float = WAIT_S, state: Callable[[], object] = str
) -> float:
    """Poll ``check`` until it holds; returns the seconds it took (fails past the bound,
    saying what ``state`` says)."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout_s, f"did not happen in time: {state()}"
        time.sleep(0.1)
    return time.monotonic() - start


def quantum_document(doc_id: str = "quantum-plan") -> Any:
    meta = DocumentMeta(
        id=doc_id, title_zh="量子信息发展方案", title_en="Quantum plan", source="q.txt"
    )
    return parse_document(meta, QUANTUM.encode())


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
@pytest.mark.parametrize(
    "question",
    [
        "北京独角兽企业有多少家？",
        "What is the R&D spending target?",
        "怀柔科学城",
        # Its best sentence is in two overlapping passages: equal cosines, in one order.
        "Which government bodies jointly drew up the 2023 work plan?",
    ],
)
def test_both_stores_rank_alike(
    retriever: Retriever, milvus_retriever: Retriever, question: str, mode: Mode
) -> None:
    local = retriever.search(question, top_k=10, mode=mode)
    shared = milvus_retriever.search(question, top_k=10, mode=mode)
    assert [h.chunk_id for h in shared.hits] == [h.chunk_id for h in local.hits]
    for a, b in zip(shared.hits, local.hits, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-4)
        assert a.lexical_score == (b.lexical_score and pytest.approx(b.lexical_score, rel=1e-4))
        assert a.dense_score == (b.dense_score and pytest.approx(b.dense_score, abs=1e-4))
        assert a.best_sentence == b.best_sentence
        cited = (a.start, a.end, a.text, a.section, a.title)
        assert cited == (b.start, b.end, b.text, b.section, b.title)


def test_term_statistics_match_the_local_bm25(snapshot: Snapshot, milvus_index: Searchable) -> None:
    for term in ("北京", "独角兽", "转果果", "quantum", "从未出现的词"):
        assert milvus_index.lexical.idf(term) == pytest.approx(snapshot.lexical.idf(term))
        assert milvus_index.lexical.knows(term) == snapshot.lexical.knows(term)
    assert milvus_index.manifest.corpus_hash == snapshot.manifest.corpus_hash
    assert milvus_index.manifest.passages == snapshot.manifest.passages


def test_add_and_remove_through_the_changes(
    milvus_settings: MilvusSettings, embedder: Embedder
) -> None:
    parts = load_components(milvus_settings("changes"), embedder=embedder)
    ensure_snapshot(parts)
    changes = DocumentChanges(parts)
    saved = changes.add(quantum_document(), QUANTUM.encode())
    assert "quantum-plan" in saved.snapshot.catalog
    assert saved.version == parts.store.version()
    assert [e.id for e in load_catalog(parts.settings.catalog_path)][-1] == "quantum-plan"
    assert (
        len(saved.snapshot.chunks_of("quantum-plan"))
        == saved.snapshot.document_size("quantum-plan")[0]
    )
    removed = changes.remove("quantum-plan")
    assert "quantum-plan" not in removed.snapshot.catalog
    with pytest.raises(NotFoundError):
        changes.remove("quantum-plan")
    _, built = ensure_snapshot(parts)  # the corpus and Milvus agree again
    assert not built


def test_a_collection_built_by_another_model_is_refused(
    milvus_settings: MilvusSettings, embedder: Embedder, start_app: StartApp
) -> None:
    settings = milvus_settings("other_model")
    parts = load_components(settings, embedder=embedder)
    ensure_snapshot(parts)
    store = parts.store
    assert isinstance(store, MilvusStore)
    fields = store.connection.manifest_info()
    assert fields is not None
    store.connection.renew({**fields, "model_id": "someone/else", "dimension": 768})
    with pytest.raises(IndexIntegrityError, match="built with someone/else"):
        store.open(embedder=embedder)
    with start_app(settings) as client:
        reply = client.get("/readyz")
        assert reply.status_code == 503 and "someone/else" in reply.json()["detail"]
        assert client.post("/v1/ask", json={"question": "独角兽"}).status_code == 503
    _, built = ensure_snapshot(parts)  # `index build` replaces it
    assert built


def test_a_replica_waits_for_the_collection_and_serves_it_once_built(
    milvus_settings: MilvusSettings, embedder: Embedder, start_app: StartApp
) -> None:
    settings = milvus_settings("late")
    with start_app(settings) as client:
        reply = client.get("/readyz")
        assert reply.status_code == 503 and "index build" in reply.json()["detail"]
        assert not (settings.index_root / "versions").exists()  # it builds nothing itself
        ensure_snapshot(load_components(settings, embedder=embedder))
        until(lambda: client.get("/readyz").status_code == 200)
        ready = client.get("/readyz").json()
        assert ready["store"] == "milvus" and ready["documents"] == 2


def test_readyz_names_the_store(any_client: TestClient) -> None:
    ready = any_client.get("/readyz").json()
    assert ready["store"] in ("local", "milvus")
    assert ready["store"] == any_client.app.state.settings.store  # type: ignore[attr-defined]


def test_an_outage_is_a_clear_503_and_heals_by_itself(
    settings: Settings, embedder: Embedder, start_app: StartApp, tmp_path: Path
) -> None:
    server = LiteServer(tmp_path / "milvus")
    server.start()
    try:
        own = _own_settings(settings, tmp_path, server.uri)
        ensure_snapshot(load_components(own, embedder=embedder))
        with start_app(own) as client:
            assert client.post("/v1/ask", json={"question": "独角兽"}).status_code == 200
            catalog = own.catalog_path.read_bytes()
            server.kill()
            for reply in (
                client.post("/v1/ask", json={"question": "独角兽"}),
                client.post(
                    "/v1/admin/documents",
                    headers=ADMIN,
                    files={"file": ("q.txt", QUANTUM.encode(), "text/plain")},
                    data={"id": "quantum-plan", "title_zh": "量子", "title_en": "Quantum"},
                ),
            ):
                assert reply.status_code == 503, reply.text
                assert "unavailable" in reply.json()["detail"]
            assert own.catalog_path.read_bytes() == catalog  # the upload changed nothing
            until(lambda: client.get("/readyz").status_code == 503)
            server.start()
            until(lambda: client.get("/readyz").status_code == 200)
            body = client.post("/v1/ask", json={"question": "北京独角兽企业有多少家？"}).json()
            assert "115家" in body["answer"]["text"]
    finally:
        server.stop()


def test_the_connection_names_what_is_wrong(
    settings: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    nowhere = _own_settings(settings, tmp_path, f"http://127.0.0.1:{free_port()}")
    nowhere = nowhere.model_copy(update={"milvus_timeout_s": 1.0})
    parts = load_components(nowhere, embedder=embedder)
    with pytest.raises(IndexUnavailableError, match="unavailable"):
        parts.store.version()


def _own_settings(settings: Settings, root: Path, uri: str) -> Settings:
    import shutil

    shutil.copytree(settings.corpus_dir, root / "corpus")
    update = {
        "store": "milvus",
        "milvus_uri": uri,
        "milvus_collection": "own",
        "corpus_dir": root / "corpus",
        "data_dir": root / "data",
    }
    return settings.model_copy(update=update)


# ---- two service processes on one Milvus ----------------------------------------------


def _ask(url: str, question: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/ask", json={"question": question, "top_k": 3}, timeout=30)


def _found(url: str, doc_id: str) -> bool:
    reply = _ask(url, QUESTION)
    return reply.status_code == 200 and any(p["doc_id"] == doc_id for p in reply.json()["passages"])


def _status(url: str) -> int:
    try:
        return httpx.get(f"{url}/readyz", timeout=30).status_code
    except httpx.HTTPError:
        return 0


def _ready(urls: list[str]) -> list[str]:
    """What each replica's /readyz says."""
    return [httpx.get(f"{url}/readyz", timeout=30).text for url in urls]


def test_two_replicas_share_one_truth(
    settings: Settings, embedder: Embedder, tmp_path: Path, components: Components
) -> None:
    """Add through one replica, answered by the other; remove through the other, gone from
    both; Milvus down: both 503 (never a 500 or part of an answer); back: both recover."""
    server = LiteServer(tmp_path / "milvus")
    server.start()
    try:
        shared = _own_settings(settings, tmp_path / "seed", server.uri)
        ensure_snapshot(load_components(shared, embedder=embedder))
        urls = []
        replicas = []
        for name in ("a", "b"):
            port = free_port()
            urls.append(f"http://127.0.0.1:{port}")
            env = {
                "POLICY_QA_STORE": "milvus",
                "POLICY_QA_MILVUS_URI": server.uri,
                "POLICY_QA_MILVUS_COLLECTION": "own",
                "POLICY_QA_CORPUS_DIR": str(shared.corpus_dir),
                "POLICY_QA_DATA_DIR": str(tmp_path / name),  # nothing shared on disk
                "POLICY_QA_MODELS_DIR": str(settings.default_model_dir.parent),
                "POLICY_QA_ADMIN_KEY": "test-admin-key",
                "POLICY_QA_RATE_LIMIT_PER_MINUTE": "100000",
            }
            replicas.append(
                uvicorn_process(
                    "service.app:create_app",
                    port=port,
                    env=env,
                    log_path=tmp_path / f"{name}.log",
                    quiet=True,
                )
            )
        a, b = urls
        with replicas[0], replicas[1]:
            until(lambda: _status(a) == 200 and _status(b) == 200, 300)
            reply = httpx.post(
                f"{a}/v1/admin/documents",
                headers=ADMIN,
                files={"file": ("q.txt", QUANTUM.encode(), "text/plain")},
                data={"id": "quantum-plan", "title_zh": "量子", "title_en": "Quantum"},
                timeout=120,
            )
            assert reply.status_code == 201, reply.text
            added = until(lambda: _found(b, "quantum-plan"))
            reply = httpx.delete(f"{b}/v1/admin/documents/quantum-plan", headers=ADMIN, timeout=60)
            assert reply.status_code == 200, reply.text
            removed = until(lambda: not _found(a, "quantum-plan") and not _found(b, "quantum-plan"))
            for name in ("a", "b"):  # neither built an index of its own
                assert not (tmp_path / name / "index" / "versions").exists()

            server.kill()
            down = until(lambda: _status(a) == 503 and _status(b) == 503)
            for url in urls:
                reply = _ask(url, "北京独角兽企业有多少家？")
                assert reply.status_code == 503 and "unavailable" in reply.json()["detail"]
            server.start()
            healed = until(
                lambda: _status(a) == 200 and _status(b) == 200, state=lambda: _ready(urls)
            )
            for url in urls:
                body = _ask(url, "北京独角兽企业有多少家？").json()
                assert "115家" in body["answer"]["text"]
                assert not _found(url, "quantum-plan")  # the removal outlived the outage
        print(
            f"\ntwo replicas: add seen by the other in {added:.2f} s, removal gone from both "
            f"in {removed:.2f} s, outage seen in {down:.2f} s, recovered in {healed:.2f} s"
        )
    finally:
        server.stop()
