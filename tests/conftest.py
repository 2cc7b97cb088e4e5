"""Shared fixtures: the real model and a real index, loaded once per session.

The corpus is copied into a temporary folder so tests that add or delete documents never
touch the project's own ``corpus/``; the default model is the one ``make model`` built.
``start_app`` starts the real app on a private corpus and data folder of a test's own;
``live_service`` runs the real server (uvicorn, a subprocess) on a private copy of the
session's corpus and index.

The Milvus fixtures run one real Milvus Lite server for the session; each suite that
changes documents gets a collection (and a corpus copy) of its own.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bench.server import free_port, uvicorn_process
from index.answer import Answerer
from index.documents import Document, load_corpus
from index.embedding import Embedder
from index.milvus.lite import LiteServer, running
from index.model_build import ensure_default_model
from index.pipeline import (
    Components,
    ensure_snapshot,
    load_components,
    make_answerer,
    make_retriever,
)
from index.retriever import Retriever
from index.searchable import Searchable
from index.settings import PROJECT_ROOT, Settings
from index.snapshot import Snapshot
from tests.apps import StartApp, settle, wait_ready

MODELS_DIR = PROJECT_ROOT / "var" / "models"


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The default model, built once (reused across sessions when current)."""
    return ensure_default_model(MODELS_DIR / "multilingual-e5-small")


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("corpus") / "corpus"
    shutil.copytree(PROJECT_ROOT / "corpus", target)
    return target


@pytest.fixture(scope="session")
def settings(
    tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path, model_dir: Path
) -> Settings:
    return Settings(
        corpus_dir=corpus_dir,
        data_dir=tmp_path_factory.mktemp("data"),
        models_dir=model_dir.parent,
        rate_limit_per_minute=100_000,
        site_rate_limit_per_minute=100_000,
        admin_key="test-admin-key",
        retrieval_keys=["test-retrieval-key"],
        cors_origins=["https://allowed.example"],
    )


@pytest.fixture(scope="session")
def embedder(settings: Settings) -> Embedder:
    return Embedder.from_settings(settings)


@pytest.fixture(scope="session")
def components(settings: Settings, embedder: Embedder) -> Components:
    return load_components(settings, embedder=embedder)


@pytest.fixture(scope="session")
def snapshot(components: Components) -> Snapshot:
    built, _ = ensure_snapshot(components)
    assert isinstance(built, Snapshot)  # the default store
    return built


@pytest.fixture(scope="session")
def retriever(components: Components, snapshot: Snapshot) -> Retriever:
    return make_retriever(components, snapshot)


@pytest.fixture(scope="session")
def answerer(components: Components) -> Answerer:
    return make_answerer(components)


@pytest.fixture(scope="session")
def documents(corpus_dir: Path) -> dict[str, Document]:
    return {doc.id: doc for doc in load_corpus(corpus_dir)}


@pytest.fixture(scope="session")
def start_app(
    settings: Settings,
    embedder: Embedder,
    snapshot: Snapshot,
    tmp_path_factory: pytest.TempPathFactory,
) -> StartApp:
    """``with start_app(corpus, **update) as client:`` the real app through its lifespan,
    loaded (or failed to load: see ``/readyz``).

    ``corpus`` is ``"copy"`` (a private copy of the session's corpus and built index) or a
    ``Settings`` to use as they are; ``update`` changes settings (limits, keys).
    """
    from service.app import create_app

    @contextlib.contextmanager
    def start(corpus: str | Settings = "copy", **update: Any) -> Iterator[TestClient]:
        if isinstance(corpus, Settings):
            own = corpus
        else:
            own = private_copy(settings, tmp_path_factory.mktemp("app"))
        with TestClient(create_app(own.model_copy(update=update), embedder=embedder)) as client:
            settle(client.app)  # type: ignore[arg-type]
            yield client

    return start


@pytest.fixture(scope="session")
def client(settings: Settings, start_app: StartApp) -> Iterator[TestClient]:
    """The real app through its lifespan, on the session's index (already built)."""
    with start_app(settings) as test_client:
        assert test_client.get("/readyz").status_code == 200
        yield test_client


# ---- Milvus (a real Milvus Lite server, one per session) ---------------------------------


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiteServer]:
    with running(tmp_path_factory.mktemp("milvus")) as server:
        yield server


MilvusSettings = Callable[[str], Settings]


@pytest.fixture(scope="session")
def milvus_settings(
    settings: Settings, milvus_server: LiteServer, tmp_path_factory: pytest.TempPathFactory
) -> MilvusSettings:
    """``milvus_settings(collection)``: settings on the session's Milvus, with a collection,
    corpus copy and data folder of their own (the collection is not built)."""

    def make(collection: str) -> Settings:
        root = tmp_path_factory.mktemp(f"milvus-{collection}")
        shutil.copytree(settings.corpus_dir, root / "corpus")
        update = {
            "store": "milvus",
            "milvus_uri": milvus_server.uri,
            "milvus_collection": collection,
            "corpus_dir": root / "corpus",
            "data_dir": root / "data",
        }
        return settings.model_copy(update=update)

    return make


@pytest.fixture(scope="session")
def milvus_components(milvus_settings: MilvusSettings, embedder: Embedder) -> Components:
    return load_components(milvus_settings("session"), embedder=embedder)


@pytest.fixture(scope="session")
def milvus_index(milvus_components: Components) -> Searchable:
    built, _ = ensure_snapshot(milvus_components)
    return built


@pytest.fixture(scope="session")
def milvus_retriever(milvus_components: Components, milvus_index: Searchable) -> Retriever:
    return make_retriever(milvus_components, milvus_index)


@pytest.fixture(scope="session")
def milvus_client(
    milvus_components: Components, milvus_index: Searchable, start_app: StartApp
) -> Iterator[TestClient]:
    """The real app on the session's Milvus collection (already built)."""
    with start_app(milvus_components.settings) as test_client:
        assert test_client.get("/readyz").status_code == 200
        yield test_client


STORES = ("local", "milvus")


@pytest.fixture(params=STORES)
def any_retriever(request: pytest.FixtureRequest) -> Retriever:
    """The session's retriever on each store in turn."""
    found: Retriever = request.getfixturevalue(
        "retriever" if request.param == "local" else "milvus_retriever"
    )
    return found


@pytest.fixture(params=STORES)
def any_client(request: pytest.FixtureRequest) -> TestClient:
    """The session's app on each store in turn."""
    found: TestClient = request.getfixturevalue(
        "client" if request.param == "local" else "milvus_client"
    )
    return found


@dataclass(frozen=True)
class LiveService:
    """A real server: its base URL, and the settings its environment gives it."""

    url: str
    settings: Settings


def private_copy(settings: Settings, root: Path) -> Settings:
    """The session's settings over a copy of its corpus and built index under ``root``."""
    shutil.copytree(settings.corpus_dir, root / "corpus")
    shutil.copytree(settings.index_root, root / "data" / "index")
    return settings.model_copy(update={"corpus_dir": root / "corpus", "data_dir": root / "data"})


def service_env(own: Settings) -> dict[str, str]:
    """The ``POLICY_QA_*`` environment that gives a server process these settings."""
    assert own.models_dir is not None
    return {
        "POLICY_QA_CORPUS_DIR": str(own.corpus_dir),
        "POLICY_QA_DATA_DIR": str(own.data_dir),
        "POLICY_QA_MODELS_DIR": str(own.models_dir),
        "POLICY_QA_RETRIEVAL_KEYS": json.dumps([k.get_secret_value() for k in own.retrieval_keys]),
        "POLICY_QA_CORS_ORIGINS": json.dumps(own.cors_origins),
        "POLICY_QA_RATE_LIMIT_PER_MINUTE": str(own.rate_limit_per_minute),
        "POLICY_QA_LOG_LEVEL": "WARNING",
    }


@pytest.fixture(scope="session")
def live_service(
    settings: Settings, snapshot: Snapshot, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveService]:
    """The real service under uvicorn on a loopback port, as ``make serve`` runs it."""
    root = tmp_path_factory.mktemp("live")
    own = private_copy(settings, root)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = root / "uvicorn.log"
    with uvicorn_process(
        "service.app:create_app", port=port, env=service_env(own), log_path=log_path
    ) as process:
        wait_ready(url, process, log_path)
        yield LiveService(url, own)
