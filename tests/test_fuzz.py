"""Schema fuzzing: schemathesis drives every operation of the service's own OpenAPI schema.

Runs in process against a throwaway app (its own copy of the corpus and index), so admin
writes during fuzzing can never touch the session's documents; afterwards both the session
index and the throwaway one are checked to be unchanged. Bounded and seeded: a run is
deterministic and takes well under a minute.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.config import SchemathesisConfig
from starlette.types import Receive, Scope, Send

from index.embedding import Embedder
from index.settings import Settings
from index.snapshot import Snapshot
from service.app import create_app

ADMIN = {"Authorization": "Bearer test-admin-key"}
RETRIEVAL = {"Authorization": "Bearer test-retrieval-key"}
# Searching costs a model call per positive case; reads and 422s cost microseconds.
EXPENSIVE = {"/v1/ask", "/retrieval"}
CONFIG: dict[str, Any] = {
    "seed": 20261125,
    "generation": {
        "mode": "all",
        "max-examples": 25,
        "deterministic": True,
        "database": "none",
        "no-shrink": False,
    },
    "phases": {"stateful": {"enabled": False}},
    "operations": [
        {"include-path": sorted(EXPENSIVE), "generation": {"max-examples": 12}},
    ],
}

CASES: Counter[str] = Counter()
STATUSES: Counter[tuple[str, int]] = Counter()


def _fingerprint(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def session_state(settings: Settings, snapshot: Snapshot) -> dict[str, str]:
    """The session's index and catalog before fuzzing, to compare with afterwards."""
    return {
        **_fingerprint(settings.index_root),
        "catalog": hashlib.sha256(settings.catalog_path.read_bytes()).hexdigest(),
    }


@pytest.fixture(scope="module")
def fuzz_app(
    settings: Settings,
    embedder: Embedder,
    snapshot: Snapshot,
    tmp_path_factory: pytest.TempPathFactory,
) -> FastAPI:
    """A throwaway app over copies of the session's corpus and index."""
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(settings.corpus_dir, root / "corpus")
    shutil.copytree(settings.index_root, root / "data" / "index")
    own = settings.model_copy(update={"corpus_dir": root / "corpus", "data_dir": root / "data"})
    return create_app(own, embedder=embedder)


class _AppProxy:
    """The ASGI app schemathesis calls: forwards to the module's throwaway app.

    The schema is loaded at import (pytest parametrizes one test per operation at
    collection), before any fixture exists; the app it exercises is bound later.
    """

    target: FastAPI | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.target is not None, "the fuzz_app fixture binds the app"
        await self.target(scope, receive, send)


PROXY = _AppProxy()
schema = schemathesis.openapi.from_dict(
    create_app(Settings()).openapi(), config=SchemathesisConfig.from_dict(CONFIG)
)
schema.app = PROXY


@pytest.fixture(scope="module", autouse=True)
def bound_app(fuzz_app: FastAPI, session_state: dict[str, str]) -> Iterator[FastAPI]:
    """Bind the throwaway app, start its lifespan and wait until its index is loaded."""
    from schemathesis.python import asgi

    PROXY.target = fuzz_app
    with asgi.get_client(PROXY):  # starts the lifespan (kept until shutdown_lifespans)
        pass
    service = fuzz_app.state.service
    deadline = time.monotonic() + 60
    while not service.ready and service.load_error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.ready, service.load_error
    yield fuzz_app
    asgi.shutdown_lifespans()
    PROXY.target = None


@schema.parametrize()
def test_every_operation_conforms_to_the_schema(case: schemathesis.Case) -> None:
    """No 5xx, and every response (status, content type, headers, body) matches the schema."""
    headers = ADMIN if case.path.startswith("/v1/admin") else None
    headers = RETRIEVAL if case.path == "/retrieval" else headers
    response = case.call_and_validate(headers=headers)
    CASES[f"{case.method} {case.path}"] += 1
    STATUSES[(f"{case.method} {case.path}", response.status_code)] += 1
