"""Shared fixtures: the real model and a real index, loaded once per session.

The corpus is copied into a temporary folder so tests that add or delete documents never
touch the project's own ``corpus/``; the default model is the one ``make model`` built.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from index.answer import Answerer
from index.documents import Document, load_corpus
from index.embedding import Embedder
from index.model_build import ensure_default_model
from index.pipeline import (
    Components,
    ensure_snapshot,
    load_components,
    make_answerer,
    make_retriever,
)
from index.retriever import Retriever
from index.settings import PROJECT_ROOT, Settings
from index.snapshot import Snapshot

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
def client(settings: Settings, embedder: Embedder, snapshot: Snapshot) -> Iterator[TestClient]:
    """The real app through its lifespan, on the session's index (already built)."""
    from service.app import create_app

    with TestClient(create_app(settings, embedder=embedder)) as test_client:
        _wait_ready(test_client)
        yield test_client


def _wait_ready(test_client: TestClient, attempts: int = 600) -> None:
    import time

    for _ in range(attempts):
        if test_client.get("/readyz").status_code == 200:
            return
        time.sleep(0.1)
    raise RuntimeError(test_client.get("/readyz").text)
