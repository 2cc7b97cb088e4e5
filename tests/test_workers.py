"""Two real server worker processes and the CLI, changing one corpus at once: no change is
lost, and every worker serves the same, latest version, which holds exactly the catalog."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.server import OFFLINE_ENV, free_port, uvicorn_process
from index.documents import load_catalog
from index.settings import PROJECT_ROOT, Settings
from index.store import IndexStore
from tests.tiny_corpus import TINY_DOCS, write_tiny_corpus

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": "Bearer test-admin-key"}
FOLLOW_WITHIN_S = 2.0
"""How soon after a change every worker must serve it."""


def _get(url: str) -> Any:
    """One request on a fresh connection, so that either worker may accept it."""
    reply = httpx.get(url, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _upload(url: str, number: int) -> None:
    text = f"一、总则\n设立第{number}号量子专项，支持海淀区量子计算与量子通信项目{number}。"
    reply = httpx.post(
        f"{url}/v1/admin/documents",
        headers=ADMIN,
        files={"file": (f"notice-{number}.txt", text.encode(), "text/plain")},
        data={
            "id": f"upload-{number}",
            "title_zh": f"通知{number}",
            "title_en": f"Notice {number}",
        },
        timeout=120,
    )
    assert reply.status_code == 201, reply.text


def _delete(url: str, number: int) -> None:
    reply = httpx.delete(f"{url}/v1/admin/documents/upload-{number}", headers=ADMIN, timeout=120)
    assert reply.status_code == 200, reply.text


def _versions_by_worker(url: str, until: float, want: str | None = None) -> dict[int, str]:
    """Ask ``/readyz`` until both workers answered (with ``want``, if given) or ``until``."""
    seen: dict[int, str] = {}
    while time.monotonic() < until:
        try:
            ready = _get(f"{url}/readyz")
        except (httpx.HTTPError, AssertionError):
            time.sleep(0.2)  # still loading
            continue
        seen[ready["worker"]] = ready["version"]
        if len(seen) == 2 and (want is None or set(seen.values()) == {want}):
            break
    return seen


def test_ten_uploads_five_deletions_and_a_cli_add_reach_every_worker(
    settings: Settings, tmp_path: Path
) -> None:
    write_tiny_corpus(tmp_path / "corpus")
    env = {
        "POLICY_QA_CORPUS_DIR": str(tmp_path / "corpus"),
        "POLICY_QA_DATA_DIR": str(tmp_path / "data"),
        "POLICY_QA_MODELS_DIR": str(settings.default_model_dir.parent),
        "POLICY_QA_ADMIN_KEY": "test-admin-key",
        "POLICY_QA_RATE_LIMIT_PER_MINUTE": "100000",
        "WEB_CONCURRENCY": "2",
    }
    source = tmp_path / "cli.txt"
    source.write_text("一、总则\n支持怀柔科学城建设综合性国家科学中心。", encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with uvicorn_process(
        "service.app:create_app",
        port=port,
        env=env,
        log_path=tmp_path / "uvicorn.log",
        workers=2,
        quiet=True,
    ):
        assert len(_versions_by_worker(url, time.monotonic() + 300)) == 2
        add = ["add", str(source), "--id", "cli-doc", "--title-zh", "怀柔", "--title-en", "H"]
        with (
            (tmp_path / "cli.log").open("wb") as log,
            subprocess.Popen(
                [sys.executable, "-m", "index", *add],
                cwd=PROJECT_ROOT,
                env={**os.environ, **OFFLINE_ENV, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            ) as cli,
            ThreadPoolExecutor(2) as pool,  # two changes at a time, on either worker
        ):
            list(pool.map(lambda n: _upload(url, n), range(10)))
            assert cli.wait(timeout=300) == 0, (tmp_path / "cli.log").read_text()
            list(pool.map(lambda n: _delete(url, n), range(5)))
        changed = time.monotonic()

        expected = {*TINY_DOCS, "cli-doc", *(f"upload-{n}" for n in range(5, 10))}
        store = IndexStore(tmp_path / "data" / "index")
        version = store.current_version()
        assert {entry.id for entry in load_catalog(tmp_path / "corpus" / "catalog.json")} == (
            expected
        )
        assert set(store.load().documents) == expected
        seen = _versions_by_worker(url, changed + FOLLOW_WITHIN_S, want=version)
        assert len(seen) == 2 and set(seen.values()) == {version}, seen
        for _ in range(10):  # answered from it, whichever worker answers
            listed = _get(f"{url}/v1/documents")["documents"]
            assert {document["id"] for document in listed} == expected
