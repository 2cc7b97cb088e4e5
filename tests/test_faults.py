"""Faults: corrupt or foreign index files, a broken corpus, a full disk, a crash mid-write.

Each fault must leave the last good index serving (or a clear refusal: ``/readyz`` 503 and
the CLI exiting 2, with a message that says what to do), never a half-written index, and
never a catalog that disagrees with the index a start serves. Document changes are tested
through both of their entry points, the CLI and the HTTP admin API, with a full disk and a
SIGKILL at each step. Everything runs on a two-document corpus in a private folder,
indexed once per module in about a second.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from index.build import with_document
from index.dense import DenseIndex
from index.documents import Document, DocumentMeta, load_catalog, save_catalog
from index.embedding import Embedder
from index.errors import IndexIntegrityError
from index.files import StagedFile
from index.lexical import LexicalIndex, Tokenizer
from index.pipeline import ensure_snapshot, load_components
from index.settings import PROJECT_ROOT, Settings
from index.snapshot import Snapshot
from index.store import POINTER, REBUILD_HINT, STALE_STAGING_S, VERSIONS, IndexStore
from tests.apps import StartApp
from tests.tiny_corpus import TINY_DOCS, write_tiny_corpus

ADMIN = {"Authorization": "Bearer test-admin-key"}
EXTRA = Document(
    meta=DocumentMeta(
        id="tiny-extra",
        title_zh="量子方案",
        title_en="Quantum plan",
        source="documents/tiny-extra.txt",
    ),
    text="一、总体要求\n支持墨子量子实验室建设量子计算原型机，到2027年建成百比特级量子计算平台。",
)


def disk_full(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class SimulatedCrashError(BaseException):
    """Stands for the process dying mid-write (not an Exception: nothing may catch it)."""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its digest: a whole-folder before/after."""
    return {str(p.relative_to(root)): digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


# ---- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(
    settings: Settings, embedder: Embedder, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A corpus and its built index, copied afresh for every test."""
    root = tmp_path_factory.mktemp("faults-template")
    write_tiny_corpus(root / "corpus")
    own = _settings(settings, root)
    ensure_snapshot(load_components(own, embedder=embedder))
    return root


def _settings(base: Settings, root: Path) -> Settings:
    return base.model_copy(update={"corpus_dir": root / "corpus", "data_dir": root / "data"})


@pytest.fixture
def env(settings: Settings, template: Path, tmp_path: Path) -> Settings:
    """Settings for a private copy of the template corpus and index."""
    shutil.copytree(template, tmp_path / "env")
    return _settings(settings, tmp_path / "env")


@pytest.fixture
def store(env: Settings) -> IndexStore:
    return IndexStore(env.index_root)


@pytest.fixture(scope="module")
def tokenizer(settings: Settings, template: Path, embedder: Embedder) -> Tokenizer:
    return load_components(_settings(settings, template), embedder=embedder).tokenizer


@pytest.fixture
def two_versions(embedder: Embedder, store: IndexStore, tokenizer: Tokenizer) -> tuple[str, str]:
    """An older good version (the template's) and a newer current one with one more doc."""
    older = store.current_version()
    assert older is not None
    added = with_document(store.load(), EXTRA, embedder=embedder, tokenizer=tokenizer)
    newer = store.save(added)
    assert store.current_version() == newer != older
    return older, newer


def served_ids(client: TestClient) -> set[str]:
    reply = client.get("/v1/documents")
    assert reply.status_code == 200, reply.text
    return {d["id"] for d in reply.json()["documents"]}


# ---- atomic, checksummed writes ---------------------------------------------------------


def test_a_saved_version_is_complete_and_checksummed(store: IndexStore) -> None:
    version = store.current_version()
    assert version is not None and store.versions() == [version]
    folder = store.root / VERSIONS / version
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    on_disk = {k: v for k, v in tree(folder).items() if k != "manifest.json"}
    assert manifest["files"] == on_disk  # every file listed, every digest right
    leftovers = [p.name for p in store.root.rglob("*") if p.name.startswith(".")]
    assert leftovers == []  # no staging folder, no temporary pointer


def test_staged_files_switch_by_rename_or_leave_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "catalog.json"
    target.write_bytes(b"old")
    staged = StagedFile(target, b"new")
    assert target.read_bytes() == b"old" and staged.tmp.read_bytes() == b"new"
    staged.commit()
    assert target.read_bytes() == b"new" and list(tmp_path.iterdir()) == [target]
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        StagedFile(target, b"newer")
    assert target.read_bytes() == b"new" and list(tmp_path.iterdir()) == [target]


# ---- corrupt index files ----------------------------------------------------------------


def _damage(folder: Path, damage: str) -> None:
    if damage == "truncate dense.faiss":
        path = folder / "dense.faiss"
        path.write_bytes(path.read_bytes()[:64])
    elif damage == "flip a byte in chunks.jsonl":
        path = folder / "chunks.jsonl"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    elif damage == "delete a bm25 file":
        next((folder / "bm25").iterdir()).unlink()
    elif damage == "truncate manifest.json":
        path = folder / "manifest.json"
        path.write_bytes(path.read_bytes()[:40])
    elif damage == "delete the version folder":
        shutil.rmtree(folder)
    else:
        raise AssertionError(damage)


DAMAGES = [
    "truncate dense.faiss",
    "flip a byte in chunks.jsonl",
    "delete a bm25 file",
    "truncate manifest.json",
    "delete the version folder",
]


@pytest.mark.parametrize("damage", DAMAGES)
def test_corrupt_current_version_falls_back_to_the_last_good_one(
    store: IndexStore,
    two_versions: tuple[str, str],
    damage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    older, newer = two_versions
    _damage(store.root / VERSIONS / newer, damage)
    with caplog.at_level(logging.WARNING, logger="index"):
        loaded = store.load()
    assert set(loaded.documents) == set(TINY_DOCS) and store.loaded_version == older
    assert store.current_manifest() is not None  # what `ensure_snapshot` reads first
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(older in r.getMessage() and newer in r.getMessage() for r in warnings)


@pytest.mark.parametrize(
    "pointer", [b"", b"\x00\xff garbage", b"../../etc", b"20990101T000000000000-deadbeef"]
)
def test_a_garbage_pointer_falls_back_to_the_newest_good_version(
    store: IndexStore, two_versions: tuple[str, str], pointer: bytes
) -> None:
    (store.root / POINTER).write_bytes(pointer)
    loaded = store.load()
    assert store.loaded_version == two_versions[1] and "tiny-extra" in loaded.documents


def test_with_no_good_version_loading_refuses_with_the_fix(store: IndexStore) -> None:
    version = store.current_version()
    assert version is not None
    _damage(store.root / VERSIONS / version, "truncate dense.faiss")
    with pytest.raises(IndexIntegrityError, match="checksum mismatch") as refused:
        store.load()
    assert REBUILD_HINT in str(refused.value)


def test_the_service_serves_the_last_good_version(
    env: Settings, start_app: StartApp, store: IndexStore
) -> None:
    older = store.current_version()
    newer = store.save(store.load())  # the same content, saved again
    _damage(store.root / VERSIONS / newer, "flip a byte in chunks.jsonl")
    with start_app(env) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["version"] == older
        assert served_ids(client) == set(TINY_DOCS)
        reply = client.post("/v1/ask", json={"question": "技术合同成交额达到多少？"})
        assert reply.status_code == 200 and reply.json()["passages"]
        warning = client.app.state.service.load_warning  # type: ignore[attr-defined]
        assert f"serving the older version {older}" in warning and "predates" not in warning


def test_an_older_fallback_is_flagged_and_an_admin_rebuild_heals_it(
    env: Settings, start_app: StartApp, store: IndexStore, two_versions: tuple[str, str]
) -> None:
    """The newest version (with an added document) is corrupt; the older one lacks it."""
    older, newer = two_versions
    (env.corpus_dir / EXTRA.meta.source).write_text(EXTRA.text, encoding="utf-8")
    save_catalog(env.catalog_path, [*load_catalog(env.catalog_path), EXTRA.meta])
    _damage(store.root / VERSIONS / newer, "truncate dense.faiss")
    with start_app(env) as client:
        assert client.get("/readyz").json()["version"] == older
        assert served_ids(client) == set(TINY_DOCS)
        assert "predates the corpus" in client.app.state.service.load_warning  # type: ignore[attr-defined]
        assert client.post("/v1/admin/rebuild", headers=ADMIN).status_code == 200
        assert served_ids(client) == {*TINY_DOCS, EXTRA.id}
    assert set(store.load().documents) == {*TINY_DOCS, EXTRA.id}


def test_the_service_refuses_to_serve_a_corrupt_only_version(
    env: Settings, start_app: StartApp, store: IndexStore
) -> None:
    version = store.current_version()
    assert version is not None
    _damage(store.root / VERSIONS / version, "truncate dense.faiss")
    with start_app(env) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "dense.faiss is corrupt" in ready.json()["detail"]
        assert "make index" in ready.json()["detail"]
        assert client.post("/v1/ask", json={"question": "北京"}).status_code == 503
        assert client.get("/healthz").status_code == 200


@pytest.fixture
def cli(
    env: Settings, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., object]:
    """Run ``python -m index ...`` in process on ``env``, reusing the loaded model."""
    import index.cli

    monkeypatch.setenv("POLICY_QA_CORPUS_DIR", str(env.corpus_dir))
    monkeypatch.setenv("POLICY_QA_DATA_DIR", str(env.data_dir))
    monkeypatch.setenv("POLICY_QA_MODELS_DIR", str(env.default_model_dir.parent))
    monkeypatch.setattr(index.cli, "load_components", partial(load_components, embedder=embedder))
    runner = CliRunner()
    return partial(runner.invoke, index.cli.app)


def test_the_cli_exits_2_with_the_fix(store: IndexStore, cli: Callable[..., object]) -> None:
    version = store.current_version()
    assert version is not None
    _damage(store.root / VERSIONS / version, "delete a bm25 file")
    result = cli(["stats"])
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "is missing" in result.output and "make index" in result.output  # type: ignore[attr-defined]


# ---- a manifest from another model ------------------------------------------------------


def _foreign_model(store: IndexStore) -> str:
    version = store.current_version()
    assert version is not None
    path = store.root / VERSIONS / version / "manifest.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw.update(model_id="sentence-transformers/all-MiniLM-L6-v2", dimension=384)
    path.write_text(json.dumps(raw), encoding="utf-8")
    return version


def test_an_index_from_another_model_is_refused_by_the_cli(
    store: IndexStore, cli: Callable[..., object]
) -> None:
    _foreign_model(store)
    result = cli(["stats"])
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "built with sentence-transformers/all-MiniLM-L6-v2" in result.output  # type: ignore[attr-defined]
    assert "make index" in result.output  # type: ignore[attr-defined]


def test_the_service_rebuilds_an_index_from_another_model(
    env: Settings, start_app: StartApp, store: IndexStore, embedder: Embedder
) -> None:
    foreign = _foreign_model(store)
    with start_app(env) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["version"] != foreign
    manifest = store.current_manifest()
    assert manifest is not None and manifest.model_id == embedder.model_id
    assert store.current_version() != foreign


# ---- a missing corpus file --------------------------------------------------------------


def test_a_missing_corpus_file_keeps_the_saved_index_serving(
    env: Settings, start_app: StartApp, store: IndexStore
) -> None:
    (env.corpus_dir / "documents" / "tiny-en.txt").unlink()
    before = tree(env.data_dir)
    with start_app(env) as client:
        assert client.get("/readyz").status_code == 200
        assert served_ids(client) == set(TINY_DOCS)
        assert "cannot read source" in str(client.app.state.service.load_warning)  # type: ignore[attr-defined]
        rebuilt = client.post("/v1/admin/rebuild", headers=ADMIN)
        assert rebuilt.status_code == 422 and "tiny-en" in rebuilt.json()["detail"]
        assert served_ids(client) == set(TINY_DOCS)
    assert tree(env.data_dir) == before


def test_a_missing_corpus_file_without_an_index_is_a_clear_503(
    env: Settings, start_app: StartApp, cli: Callable[..., object]
) -> None:
    shutil.rmtree(env.index_root)
    (env.corpus_dir / "documents" / "tiny-en.txt").unlink()
    with start_app(env) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "cannot read source of tiny-en" in ready.json()["detail"]
    result = cli(["build"])
    assert result.exit_code == 2 and "tiny-en" in result.output  # type: ignore[attr-defined]


# ---- a full disk ------------------------------------------------------------------------


NEW_ID = "tiny-new"
ACTIONS = {
    "add": ["index", "source", "catalog", "pointer"],
    "remove": ["index", "catalog", "pointer"],
    "rebuild": ["index", "pointer"],
}
AFTER = {"add": {*TINY_DOCS, NEW_ID}, "remove": {"tiny-zh"}, "rebuild": set(TINY_DOCS)}


def _disk_full_at(step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the write of ``step`` fail with ENOSPC: the index version, the document's
    source, the catalog or the new ``CURRENT``."""
    if step == "index":
        monkeypatch.setattr(DenseIndex, "save", disk_full)
        return
    name = {"source": f"{NEW_ID}.txt", "catalog": "catalog.json", "pointer": POINTER}[step]
    original = StagedFile.__init__

    def full_for_one(self: StagedFile, path: Path, payload: bytes) -> None:
        if path.name == name:
            disk_full()
        original(self, path, payload)

    monkeypatch.setattr(StagedFile, "__init__", full_for_one)


def _change(
    entry: str, action: str, *, cli: Callable[..., Any], client: TestClient | None, source: Path
) -> tuple[bool, str]:
    """Make ``action`` through ``entry`` (the CLI or the HTTP admin API): (done, message)."""
    if entry == "cli":
        command = {
            "add": ["add", str(source), "--id", NEW_ID, "--title-zh", "新", "--title-en", "New"],
            "remove": ["remove", "tiny-en"],
            "rebuild": ["build", "--force"],
        }[action]
        result = cli(command)
        assert "Traceback" not in result.output, result.output
        return result.exit_code == 0, str(result.stdout)
    assert client is not None
    if action == "add":
        reply = client.post(
            "/v1/admin/documents",
            headers=ADMIN,
            files={"file": (source.name, source.read_bytes(), "text/plain")},
            data={"id": NEW_ID, "title_zh": "新", "title_en": "New"},
        )
    elif action == "remove":
        reply = client.delete("/v1/admin/documents/tiny-en", headers=ADMIN)
    else:
        reply = client.post("/v1/admin/rebuild", headers=ADMIN)
    return reply.is_success, reply.text


@pytest.mark.parametrize("entry", ["cli", "http"])
@pytest.mark.parametrize(
    ("action", "step"), [(action, step) for action, steps in ACTIONS.items() for step in steps]
)
def test_a_full_disk_at_any_step_changes_nothing(
    env: Settings,
    start_app: StartApp,
    cli: Callable[..., Any],
    tmp_path: Path,
    entry: str,
    action: str,
    step: str,
) -> None:
    """Whichever write hits the full disk, the index, catalog and corpus stay as they were,
    the refusal says so in one line, and the same change succeeds once there is space."""
    source = tmp_path / "new.txt"
    source.write_text(EXTRA.text, encoding="utf-8")
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(start_app(env)) if entry == "http" else None
        before = tree(env.corpus_dir), tree(env.data_dir)
        with pytest.MonkeyPatch.context() as monkeypatch:
            _disk_full_at(step, monkeypatch)
            done, message = _change(entry, action, cli=cli, client=client, source=source)
        assert not done, message
        assert "cannot write the index (No space left on device)" in message
        assert "nothing was changed and the previous index is still current" in message
        if entry == "cli":
            assert len(message.strip().splitlines()) == 1, message  # progress bars: stderr
        assert (tree(env.corpus_dir), tree(env.data_dir)) == before
        if client is not None:
            assert served_ids(client) == set(TINY_DOCS)
        done, message = _change(entry, action, cli=cli, client=client, source=source)
        assert done, message
        catalog = {entry.id for entry in load_catalog(env.catalog_path)}
        assert catalog == set(IndexStore(env.index_root).load().documents) == AFTER[action]
        if client is not None:
            assert served_ids(client) == catalog


KILL_AT = """
import os, signal, sys
from index.files import StagedFile
from index.lexical import LexicalIndex

step, entry, source = sys.argv[1:4]


def die():
    print("killed at", step, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if step == "index":  # half of the new version is on disk
    save = LexicalIndex.save
    LexicalIndex.save = lambda self, folder, **options: (save(self, folder, **options), die())
else:  # just after this file was renamed into place
    name = {"source": "tiny-new.txt", "catalog": "catalog.json", "pointer": "CURRENT"}[step]
    commit = StagedFile.commit
    StagedFile.commit = lambda self: (commit(self), self.path.name == name and die())
if entry == "cli":
    from index.cli import app

    app(["add", source, "--id", "tiny-new", "--title-zh", "新", "--title-en", "New"])
else:
    from fastapi.testclient import TestClient
    from service.app import create_app
    from tests.apps import settle

    with TestClient(create_app()) as client:
        settle(client.app)
        client.post(
            "/v1/admin/documents",
            headers={"Authorization": "Bearer test-admin-key"},
            files={"file": ("new.txt", open(source, "rb").read(), "text/plain")},
            data={"id": "tiny-new", "title_zh": "新", "title_en": "New"},
        )
print("survived", flush=True)
"""


@pytest.mark.parametrize("entry", ["cli", "http"])
@pytest.mark.parametrize("step", ACTIONS["add"])
def test_a_kill_at_any_step_leaves_an_index_that_serves_and_a_start_that_agrees(
    env: Settings, start_app: StartApp, tmp_path: Path, entry: str, step: str
) -> None:
    """SIGKILL a real process adding a document, at each step. The index on disk still
    loads, and the next start serves exactly what the catalog lists: the catalog moves
    before ``CURRENT``, so a catalog left ahead of the index makes the start rebuild."""
    source = tmp_path / "new.txt"
    source.write_text(EXTRA.text, encoding="utf-8")
    child = subprocess.run(
        [sys.executable, "-c", KILL_AT, step, entry, str(source)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={
            **os.environ,
            "PYTHONPATH": str(PROJECT_ROOT),
            "HF_HUB_OFFLINE": "1",
            "POLICY_QA_CORPUS_DIR": str(env.corpus_dir),
            "POLICY_QA_DATA_DIR": str(env.data_dir),
            "POLICY_QA_MODELS_DIR": str(env.default_model_dir.parent),
            "POLICY_QA_ADMIN_KEY": "test-admin-key",
        },
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    assert f"killed at {step}" in child.stdout
    committed = step in ("catalog", "pointer")
    catalog = {entry.id for entry in load_catalog(env.catalog_path)}
    assert catalog == ({*TINY_DOCS, NEW_ID} if committed else set(TINY_DOCS))
    in_index = set(IndexStore(env.index_root).load().documents)  # still loads
    assert in_index == ({*TINY_DOCS, NEW_ID} if step == "pointer" else set(TINY_DOCS))
    with start_app(env) as client:
        assert client.get("/readyz").status_code == 200
        assert served_ids(client) == catalog
        assert client.post("/v1/ask", json={"question": "墨子量子实验室"}).status_code == 200


# ---- a crash mid-write ------------------------------------------------------------------


def test_an_exception_mid_save_leaves_no_trace(
    store: IndexStore, snapshot_of_store: Snapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = tree(store.root)

    def crash(*args: object, **kwargs: object) -> None:
        raise SimulatedCrashError

    monkeypatch.setattr(LexicalIndex, "save", crash)
    with pytest.raises(SimulatedCrashError):
        store.save(snapshot_of_store)
    assert tree(store.root) == before
    monkeypatch.undo()
    store.load()


@pytest.fixture
def snapshot_of_store(store: IndexStore) -> Snapshot:
    return store.load()


CRASHING_SAVE = """
import sys, time
from pathlib import Path
from index.lexical import LexicalIndex, Tokenizer
from index.store import IndexStore

store = IndexStore(Path(sys.argv[1]))
snapshot = store.load()
original = LexicalIndex.save

def slow_save(self, folder, **options):
    original(self, folder, **options)  # half of the version is on disk now
    print("writing", flush=True)
    time.sleep(60)

LexicalIndex.save = slow_save
store.save(snapshot)
"""


def test_a_killed_build_leaves_the_last_index(store: IndexStore) -> None:
    """SIGKILL a real process half-way through writing a version."""
    before = store.current_version()
    with subprocess.Popen(
        [sys.executable, "-c", CRASHING_SAVE, str(store.root)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == b"writing\n"
            staging = list((store.root / VERSIONS).glob(".staging-*"))
            assert len(staging) == 1 and (staging[0] / "bm25").is_dir()
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert store.current_version() == before and store.versions() == [before]
    assert set(store.load().documents) == set(TINY_DOCS)
    # A later save works; the crashed build's folder goes once it is clearly stale.
    old = time.time() - STALE_STAGING_S - 60
    os.utime(staging[0], (old, old))
    newer = store.save(store.load())
    assert store.current_version() == newer and not staging[0].exists()


def test_half_written_leftovers_are_never_served(
    store: IndexStore, snapshot_of_store: Snapshot
) -> None:
    """A version folder without a manifest, a newer uncommitted version and a stray
    temporary pointer (what a crash between the steps of a save could leave) are ignored."""
    current = store.current_version()
    assert current is not None
    pending = store.prepare(snapshot_of_store)
    (store.root / VERSIONS / "20000101T000000000000-deadbeef").mkdir()
    assert store.current_version() == current
    assert pending.pointer.tmp.exists()
    store.load()
    assert store.loaded_version == current
    pending.discard()
    assert not pending.pointer.tmp.exists()
    assert not (store.root / VERSIONS / pending.name).exists()
