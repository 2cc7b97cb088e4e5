"""Persisted indexes: round trip, refusal of mismatched or corrupt artefacts, increments."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from index.build import check_compatible, is_up_to_date, with_document, without_document
from index.dense import DenseIndex, IndexType, choose_index_type
from index.documents import Document, DocumentMeta
from index.errors import IndexIntegrityError, IndexWriteError, NotFoundError
from index.pipeline import Components, ensure_snapshot, make_retriever
from index.retriever import MODES
from index.settings import Settings
from index.snapshot import FORMAT_VERSION, Snapshot
from index.store import IndexStore
from index.stores import LocalStore

NEW_TEXT = (
    "一、总体要求\n为加快建设量子信息科学中心，制定本办法。\n"
    "二、主要措施\n支持墨子量子实验室建设量子计算原型机，到2027年建成百比特级量子计算平台。"
)


@pytest.fixture
def store(tmp_path: Path, snapshot: Snapshot) -> IndexStore:
    store = IndexStore(tmp_path / "index")
    store.save(snapshot)
    return store


def _new_document() -> Document:
    meta = DocumentMeta(
        id="quantum-2027",
        title_zh="量子办法",
        title_en="Quantum measures",
        source="documents/quantum-2027.txt",
    )
    return Document(meta=meta, text=NEW_TEXT)


def test_round_trip_gives_identical_results(
    store: IndexStore, snapshot: Snapshot, components: Components
) -> None:
    loaded = store.load()
    assert loaded.manifest == replace(snapshot.manifest, files=loaded.manifest.files)
    assert set(loaded.manifest.files) >= {"chunks.jsonl", "dense.faiss", "documents.json"}
    question = "北京独角兽企业有多少家？"
    before = make_retriever(components, snapshot).search(question, top_k=5).hits
    after = make_retriever(components, loaded).search(question, top_k=5).hits
    assert before == after


def test_model_mismatch_is_refused(store: IndexStore, components: Components) -> None:
    loaded = store.load()
    other = replace(loaded.manifest, model_id="sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(IndexIntegrityError, match="built with sentence-transformers"):
        check_compatible(other, embedder=components.embedder)
    with pytest.raises(IndexIntegrityError, match="768-d"):
        check_compatible(replace(loaded.manifest, dimension=768), embedder=components.embedder)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "manifest"])
def test_corrupt_artefacts_are_refused(store: IndexStore, damage: str) -> None:
    folder = store.root / "versions" / str(store.current_version())
    target = folder / "dense.faiss"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "flip":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "delete":
        target.unlink()
    else:
        (folder / "manifest.json").write_text("{", encoding="utf-8")
    with pytest.raises(IndexIntegrityError, match="rebuild"):
        store.load()


def test_other_format_version_is_refused(store: IndexStore) -> None:
    manifest = store.root / "versions" / str(store.current_version()) / "manifest.json"
    raw = json.loads(manifest.read_text(encoding="utf-8"))
    raw["format_version"] = 999
    manifest.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(IndexIntegrityError, match="format"):
        store.load()


def test_missing_index_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(IndexIntegrityError, match="make index"):
        IndexStore(tmp_path).load()


def test_failed_save_keeps_the_previous_version(
    store: IndexStore, snapshot: Snapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = store.current_version()

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapshot.dense, "save", disk_full)
    with pytest.raises(IndexWriteError, match="No space"):
        store.save(snapshot)
    assert store.current_version() == before
    assert not [p for p in (store.root / "versions").iterdir() if p.name.startswith(".staging")]
    store.load()


def test_incremental_add_and_remove(snapshot: Snapshot, components: Components) -> None:
    added = with_document(
        snapshot, _new_document(), embedder=components.embedder, tokenizer=components.tokenizer
    )
    new_rows = added.rows_for_documents({"quantum-2027"})
    assert len(new_rows) >= 1 and added.dense.size == added.vector_count
    # Existing passages keep their row ids: nothing was re-embedded.
    assert {r: c for r, c in added.chunks.items() if r in snapshot.chunks} == snapshot.chunks
    retriever = make_retriever(components, added)
    hits = retriever.search("墨子量子实验室要建什么平台？", top_k=3).hits
    assert hits[0].doc_id == "quantum-2027"
    assert added.documents["quantum-2027"].text[hits[0].start : hits[0].end] == hits[0].text

    # BM25 took the new passages into its delta segment instead of rebuilding.
    assert added.lexical.delta_size == snapshot.lexical.delta_size + len(new_rows)
    assert added.lexical.main_size == snapshot.lexical.main_size

    removed = without_document(added, "quantum-2027")
    assert removed.dense.size == removed.vector_count == snapshot.vector_count
    assert "quantum-2027" not in removed.documents
    hits = make_retriever(components, removed).search("墨子量子实验室", top_k=10).hits
    assert all(hit.doc_id != "quantum-2027" for hit in hits)
    with pytest.raises(NotFoundError):
        without_document(removed, "quantum-2027")


def test_an_added_document_survives_a_round_trip(
    tmp_path: Path, snapshot: Snapshot, components: Components
) -> None:
    added = with_document(
        snapshot, _new_document(), embedder=components.embedder, tokenizer=components.tokenizer
    )
    store = IndexStore(tmp_path / "index")
    store.save(added)
    loaded = store.load()
    assert loaded.lexical.delta_size == added.lexical.delta_size > 0
    for mode in ("lexical", "hybrid"):
        question = "墨子量子实验室要建什么平台？"
        before = make_retriever(components, added).search(question, top_k=5, mode=mode).hits
        after = make_retriever(components, loaded).search(question, top_k=5, mode=mode).hits
        assert before == after and before[0].doc_id == "quantum-2027"


def test_document_filters_select_exactly_their_rows(snapshot: Snapshot) -> None:
    for doc_id in snapshot.documents:
        rows = snapshot.rows_for_documents({doc_id})
        assert rows.tolist() == sorted(r for r, c in snapshot.chunks.items() if c.doc_id == doc_id)
        mask = snapshot.lexical_mask(rows)
        assert (mask == np.isin(snapshot.lexical_rows, rows)).all() and mask.any()
    assert not snapshot.lexical_mask(np.array([10**9], dtype=np.int64)).any()


def test_large_deltas_are_folded_into_new_main_segments(
    snapshot: Snapshot, components: Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    import index.build

    monkeypatch.setattr(index.build, "DELTA_MIN_PASSAGES", 0)
    monkeypatch.setattr(index.build, "DELTA_MAX_FRACTION", 0.0)
    added = with_document(
        snapshot, _new_document(), embedder=components.embedder, tokenizer=components.tokenizer
    )
    assert added.lexical.delta_size == 0 and added.lexical.main_size == len(added.chunks)
    assert added.dense.delta_size == 0 and added.dense.size == added.vector_count
    assert added.manifest.main_segment != snapshot.manifest.main_segment  # written afresh


def test_an_older_format_is_rebuilt_by_build(tmp_path: Path, components: Components) -> None:
    local = LocalStore(components.settings.model_copy(update={"data_dir": tmp_path}))
    store = local.versions
    parts = replace(components, store=local)
    ensure_snapshot(parts)
    manifest = store.root / "versions" / str(store.current_version()) / "manifest.json"
    raw = json.loads(manifest.read_text(encoding="utf-8"))
    raw["format_version"] = 1
    manifest.write_text(json.dumps(raw), encoding="utf-8")
    _, built = ensure_snapshot(parts)
    assert built and store.load().manifest.format_version == FORMAT_VERSION


def test_up_to_date_detects_corpus_and_settings_changes(
    snapshot: Snapshot, components: Components, settings: Settings
) -> None:
    documents = list(snapshot.documents.values())
    model_id = components.embedder.model_id
    assert is_up_to_date(snapshot.manifest, documents, model_id=model_id, settings=settings)
    edited = [*documents[:-1], replace(documents[-1], text=documents[-1].text + "补充。")]
    assert not is_up_to_date(snapshot.manifest, edited, model_id=model_id, settings=settings)
    other = settings.model_copy(update={"chunk_size": 200, "chunk_overlap": 40})
    assert not is_up_to_date(snapshot.manifest, documents, model_id=model_id, settings=other)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_ann_index_types_search_like_flat(
    snapshot: Snapshot, components: Components, kind: IndexType
) -> None:
    vector = components.embedder.embed_query("技术合同成交额")
    flat = snapshot.dense.search(vector, 5)
    other = snapshot.dense.converted(kind)
    assert other.index_type == kind and other.size == snapshot.dense.size
    ids = [i for i, _ in other.search(vector, 5)]
    assert ids[0] == flat[0][0]
    assert len(set(ids) & {i for i, _ in flat}) >= 3
    assert choose_index_type(1_000) == "flat" and choose_index_type(2_000_000) == "hnsw"


def test_mmap_load(store: IndexStore) -> None:
    loaded = store.load(mmap=True)
    assert loaded.dense.size == loaded.vector_count
    assert np.array_equal(loaded.lexical_rows, np.sort(loaded.lexical_rows))


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_a_memory_mapped_index_can_be_changed_through_a_copy(
    tmp_path: Path, snapshot: Snapshot, kind: IndexType
) -> None:
    """Removals work on a compacted copy, which must own its memory (FAISS aborts
    the process on a write into a mapped file)."""
    vectors, ids = snapshot.dense.export()
    dense = DenseIndex.create(snapshot.dense.dimension, kind, training=vectors)
    dense.add(vectors, ids)
    dense.save(tmp_path / "dense.faiss")
    mapped = DenseIndex.load(tmp_path / "dense.faiss", kind, mmap=True)
    changed = mapped.compacted()
    changed.remove(ids[:10])
    changed.add(vectors[:3], ids[:3])
    assert changed.size == mapped.size - 7 and mapped.size == len(ids)
    [(best, _)] = mapped.search(vectors[20], 1)
    assert best == ids[20]


def test_a_search_leaves_its_thread_one_faiss_thread(snapshot: Snapshot) -> None:
    """Request threads must not keep FAISS OpenMP teams spinning beside the model."""
    import faiss

    vectors, ids = snapshot.dense.export()

    def search_then_threads() -> tuple[int, int]:
        faiss.omp_set_num_threads(2)
        [(best, _)] = snapshot.dense.search(vectors[5], 1)
        return int(best), int(faiss.omp_get_max_threads())

    with ThreadPoolExecutor(1) as pool:
        best, threads = pool.submit(search_then_threads).result(30)
    assert best == ids[5] and threads == 1


def test_old_versions_are_pruned(store: IndexStore, snapshot: Snapshot) -> None:
    for _ in range(4):
        store.save(snapshot)
    assert len([p for p in (store.root / "versions").iterdir()]) == 3
    shutil.rmtree(store.root)


# ---- delta segments and reused main files -----------------------------------------------


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_a_dense_delta_searches_like_one_index_and_leaves_its_base_alone(
    tmp_path: Path, snapshot: Snapshot, kind: IndexType
) -> None:
    vectors, ids = snapshot.dense.export()
    cut = len(ids) * 3 // 4
    base = DenseIndex.create(snapshot.dense.dimension, kind)
    base.add(vectors[:cut], ids[:cut])
    extended = base.extended(vectors[cut:], ids[cut:])
    assert (base.size, base.delta_size) == (cut, 0)
    assert (extended.size, extended.delta_size) == (len(ids), len(ids) - cut)
    whole = snapshot.dense  # flat, everything in its main segment
    allowed = ids[::3]
    for query in vectors[::17]:
        assert [i for i, _ in extended.search(query, 20)] == [i for i, _ in whole.search(query, 20)]
        filtered = [i for i, _ in extended.search(query, 20, allowed=allowed)]
        assert filtered == [i for i, _ in whole.search(query, 20, allowed=allowed)]
    extended.save(tmp_path / "main.faiss", tmp_path / "delta.faiss")
    loaded = DenseIndex.load(tmp_path / "main.faiss", kind, delta_path=tmp_path / "delta.faiss")
    compacted = loaded.compacted()
    assert compacted.delta_size == 0 and np.array_equal(np.sort(compacted.ids()), np.sort(ids))
    compacted.remove(ids[cut : cut + 5])
    assert compacted.size == len(ids) - 5 and loaded.size == len(ids)
    with pytest.raises(ValueError, match="delta"):
        extended.save(tmp_path / "again.faiss")


def _main_files(store: IndexStore, version: str) -> dict[str, Path]:
    folder = store.root / "versions" / version
    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    return {
        name: folder / name
        for name in manifest["files"]
        if not name.startswith("delta/") and name not in ("lexical_rows.npy", "bm25/segments.json")
    }


@pytest.mark.parametrize("share", [False, True])
def test_an_add_reuses_the_main_segment_files(
    tmp_path: Path,
    snapshot: Snapshot,
    components: Components,
    monkeypatch: pytest.MonkeyPatch,
    share: bool,
) -> None:
    """Small main segments are copied (each version stands alone); big ones hard-linked."""
    import index.store

    monkeypatch.setattr(index.store, "SHARE_MIN_BYTES", 0 if share else 1 << 40)
    store = IndexStore(tmp_path / "index")
    first = store.save(snapshot)
    added = with_document(
        snapshot, _new_document(), embedder=components.embedder, tokenizer=components.tokenizer
    )
    assert added.manifest.main_segment == snapshot.manifest.main_segment
    assert added.dense.delta_size > 0 and added.lexical.delta_size > 0
    second = store.save(added)
    before, after = _main_files(store, first), _main_files(store, second)
    assert before.keys() == after.keys() and {"dense.faiss", "chunks.jsonl"} <= set(after)
    for name, path in after.items():
        assert path.read_bytes() == before[name].read_bytes()
        assert path.samefile(before[name]) == share, name
    delta = json.loads((store.root / "versions" / second / "delta/documents.json").read_text())
    assert [d["meta"]["id"] for d in delta] == ["quantum-2027"]

    loaded = store.load()
    assert loaded.manifest.main_segment == snapshot.manifest.main_segment
    question = "墨子量子实验室要建什么平台？"
    for mode in ("dense", "hybrid"):
        ours = make_retriever(components, loaded).search(question, top_k=5, mode=mode).hits
        assert ours == make_retriever(components, added).search(question, top_k=5, mode=mode).hits
        assert ours[0].doc_id == "quantum-2027"

    # Taking the added document out again only changes the deltas...
    withdrawn = without_document(loaded, "quantum-2027")
    assert withdrawn.dense.delta_size == 0 and withdrawn.lexical.delta_size == 0
    assert withdrawn.manifest.main_segment == snapshot.manifest.main_segment
    third = store.save(withdrawn)
    for name, path in _main_files(store, third).items():
        assert path.samefile(after[name]) == share
    reloaded = store.load()
    assert set(reloaded.documents) == set(snapshot.documents)
    for mode in MODES:
        now = make_retriever(components, reloaded).search(question, top_k=5, mode=mode)
        then = make_retriever(components, snapshot).search(question, top_k=5, mode=mode)
        assert now.hits == then.hits

    # ...removing a document of the main segment makes a new one, written afresh.
    doc_id = next(iter(snapshot.documents))
    removed = without_document(reloaded, doc_id)
    assert removed.manifest.main_segment != snapshot.manifest.main_segment
    fourth = store.save(removed)
    assert not any(p.samefile(after[n]) for n, p in _main_files(store, fourth).items())
    assert set(store.load().documents) == set(snapshot.documents) - {doc_id}
