"""FAISS inner-product search over unit vectors, addressed by stable int64 row ids.

Exact (flat) search for small corpora; HNSW or IVF-SQ8 for large ones. Ids are
stable across incremental adds and removals, so chunk metadata never needs renumbering.

Like BM25, the index has a main segment and a delta: vectors added to a built index go to
a small exact (flat) delta, so adding a document neither copies nor rewrites the main
segment (which may be memory-mapped and shared with the snapshot being served).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

IndexType = Literal["flat", "hnsw", "ivf"]
# Exact search is perfect and, up to this many vectors, a few milliseconds per query
# (docs/performance-scale.md).
FLAT_MAX_VECTORS = 50_000
# HNSW keeps ~1.9 KB per 384-d vector (graph in RAM, vectors mmap-able); beyond this many
# vectors IVF-SQ8 (~0.5 KB per vector, inverted lists mmap'ed) keeps memory in bounds.
HNSW_MAX_VECTORS = 3_000_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
# recall@10 >= 0.95 at 1M vectors needs efSearch 512; FAISS searches with max(efSearch, k)
# and the retriever asks for 300 hits, so small corpora are unaffected.
HNSW_EF_SEARCH = 512
# recall@10 >= 0.95 needs nprobe 8 at 1M (2,000 lists), 12 at 100k, 24 at 10k.
IVF_NPROBE = 24
# One OpenMP thread per search: parallelism belongs across requests, and a thread that
# searched with more kept a team of OpenMP workers spinning beside the next model call.
SEARCH_THREADS = 1


def ivf_lists(vectors: int) -> int:
    """IVF cells for ``vectors`` training vectors: about 2·√n, at most 4,096."""
    return max(1, min(4096, int(np.sqrt(vectors) * 2)))


def _faiss() -> Any:
    """faiss, imported lazily and untyped (its SWIG stubs are incomplete)."""
    import faiss

    return faiss


def choose_index_type(vectors: int, requested: str = "auto") -> IndexType:
    """Exact up to 50k vectors, HNSW up to 3M, IVF-SQ8 beyond (memory-bound)."""
    if requested in ("flat", "hnsw", "ivf"):
        return requested  # type: ignore[return-value]
    if vectors <= FLAT_MAX_VECTORS:
        return "flat"
    return "hnsw" if vectors <= HNSW_MAX_VECTORS else "ivf"


class DenseIndex:
    """A FAISS index wrapped in an id map."""

    def __init__(
        self,
        index: Any,
        index_type: IndexType,
        *,
        mapped_from: Path | None = None,
        delta: Any = None,
    ) -> None:
        self._index = index
        self.index_type = index_type
        self._mapped_from = mapped_from
        """The file this index's storage is memory-mapped from, if it is."""
        self._delta = delta
        """Vectors added since the main segment was built: a flat id-mapped index, or None."""

    @classmethod
    def create(
        cls, dimension: int, index_type: IndexType, *, training: np.ndarray | None = None
    ) -> DenseIndex:
        faiss = _faiss()
        base: Any
        if index_type == "flat":
            base = faiss.IndexFlatIP(dimension)
        elif index_type == "hnsw":
            base = faiss.IndexHNSWFlat(dimension, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            base.hnsw.efSearch = HNSW_EF_SEARCH
        else:
            if training is None or len(training) == 0:
                raise ValueError("an IVF index needs training vectors")
            lists = ivf_lists(len(training))
            quantizer = faiss.IndexFlatIP(dimension)
            base = faiss.IndexIVFScalarQuantizer(
                quantizer,
                dimension,
                lists,
                faiss.ScalarQuantizer.QT_8bit,
                faiss.METRIC_INNER_PRODUCT,
            )
            base.train(training)
            base.nprobe = IVF_NPROBE
        return cls(faiss.IndexIDMap2(base), index_type)

    @property
    def size(self) -> int:
        return int(self._index.ntotal) + self.delta_size

    @property
    def delta_size(self) -> int:
        return 0 if self._delta is None else int(self._delta.ntotal)

    @property
    def dimension(self) -> int:
        return int(self._index.d)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add to the main segment (builds; an index nobody else holds)."""
        _add(self._index, vectors, ids)

    def extended(self, vectors: np.ndarray, ids: np.ndarray) -> DenseIndex:
        """A new index with these vectors in its delta; this one is unchanged and shares its
        main segment with the new one (only the small delta is copied)."""
        faiss = _faiss()
        if self._delta is None:
            delta = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dimension))
        else:
            delta = faiss.clone_index(self._delta)
        _add(delta, vectors, ids)
        return DenseIndex(self._index, self.index_type, mapped_from=self._mapped_from, delta=delta)

    def without_added(self, ids: np.ndarray) -> DenseIndex:
        """A new index without these vectors, all of them in the delta; this one is
        unchanged and shares its main segment with the new one.

        Raises:
            ValueError: an id is not in the delta.
        """
        if self._delta is None or not np.isin(ids, _ids(self._delta)).all():
            raise ValueError("only vectors in the delta segment can be taken out of it")
        faiss = _faiss()
        delta = faiss.clone_index(self._delta)
        delta.remove_ids(faiss.IDSelectorBatch(ids.astype(np.int64)))
        return DenseIndex(self._index, self.index_type, mapped_from=self._mapped_from, delta=delta)

    def compacted(self) -> DenseIndex:
        """An independent copy with the delta folded into the main segment."""
        main = _owned_copy(self._index, self.index_type, self._mapped_from)
        copy = DenseIndex(main, self.index_type)
        if self._delta is not None and self._delta.ntotal:
            vectors, ids = _stored(self._delta)
            copy.add(vectors, ids)
        return copy

    def remove(self, ids: np.ndarray) -> None:
        """Drop rows (on an index nobody else holds: a ``compacted`` copy); HNSW cannot
        delete in place, so it is rebuilt from its own vectors."""
        faiss = _faiss()
        if not len(ids):
            return
        if self._delta is not None:
            self._delta.remove_ids(faiss.IDSelectorBatch(ids.astype(np.int64)))
        if self.index_type != "hnsw":
            self._index.remove_ids(faiss.IDSelectorBatch(ids.astype(np.int64)))
            return
        vectors, kept = _stored(self._index)
        keep = ~np.isin(kept, ids)
        fresh = DenseIndex.create(self.dimension, "hnsw")
        fresh.add(vectors[keep], kept[keep])
        self._index = fresh._index

    def export(self) -> tuple[np.ndarray, np.ndarray]:
        """All stored vectors and their ids (exact for flat/HNSW, decoded for IVF-SQ8)."""
        parts = [_stored(self._index)]
        if self._delta is not None:
            parts.append(_stored(self._delta))
        return np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def converted(self, index_type: IndexType) -> DenseIndex:
        """The same vectors in another index type, e.g. when a corpus outgrows exact search."""
        vectors, ids = self.export()
        fresh = DenseIndex.create(self.dimension, index_type, training=vectors)
        fresh.add(vectors, ids)
        return fresh

    def ids(self) -> np.ndarray:
        parts = [_ids(self._index)] + ([] if self._delta is None else [_ids(self._delta)])
        return np.concatenate(parts)

    def search(
        self,
        vector: np.ndarray,
        k: int,
        *,
        allowed: np.ndarray | None = None,
        threads: int = SEARCH_THREADS,
    ) -> list[tuple[int, float]]:
        """Top ``k`` (row id, cosine) pairs, best first; FAISS's -1 padding dropped.

        Args:
            vector: a unit query vector.
            k: how many neighbours.
            allowed: optional row ids to restrict the search to (document filter).
            threads: FAISS's OpenMP threads on this thread from now on.
        """
        faiss = _faiss()
        faiss.omp_set_num_threads(threads)  # a setting of the calling thread only
        if self.size == 0 or k <= 0:
            return []
        if allowed is not None and not len(allowed):
            return []
        selector = None if allowed is None else faiss.IDSelectorBatch(allowed.astype(np.int64))
        query = np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32)
        hits = _hits(self._index, query, k, self._search_params(selector))
        if self.delta_size:
            delta_params = None if selector is None else faiss.SearchParameters(sel=selector)
            hits = sorted(
                hits + _hits(self._delta, query, k, delta_params),
                key=lambda hit: hit[1],
                reverse=True,
            )[:k]
        return hits

    def _search_params(self, selector: Any) -> Any:
        faiss = _faiss()
        if selector is None:
            return None
        if self.index_type == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=HNSW_EF_SEARCH)
        if self.index_type == "ivf":
            return faiss.SearchParametersIVF(sel=selector, nprobe=IVF_NPROBE)
        return faiss.SearchParameters(sel=selector)

    def save(self, path: Path, delta_path: Path | None = None, *, main: bool = True) -> None:
        """Write the main segment to ``path`` (unless ``main`` is False: its file is already
        in place) and a non-empty delta to ``delta_path``.

        Raises:
            ValueError: there is a delta but nowhere to write it.
        """
        faiss = _faiss()
        if main:
            faiss.write_index(self._index, str(path))
        if self.delta_size:
            if delta_path is None:
                raise ValueError("this index has a delta segment: give delta_path")
            faiss.write_index(self._delta, str(delta_path))

    @classmethod
    def load(
        cls,
        path: Path,
        index_type: IndexType,
        *,
        mmap: bool = False,
        delta_path: Path | None = None,
    ) -> DenseIndex:
        faiss = _faiss()
        # MMAP maps IVF inverted lists, MMAP_IFC flat codes (flat, and HNSW's vectors; the
        # two cannot be combined): the pages live in the page cache, shared by every worker
        # process that maps the file.
        flags = 0
        if mmap:
            flags = faiss.IO_FLAG_MMAP if index_type == "ivf" else faiss.IO_FLAG_MMAP_IFC
        index = faiss.read_index(str(path), flags)
        delta = faiss.read_index(str(delta_path)) if delta_path is not None else None
        return cls(
            _tuned(faiss, index, index_type),
            index_type,
            mapped_from=path if mmap else None,
            delta=delta,
        )


def _add(index: Any, vectors: np.ndarray, ids: np.ndarray) -> None:
    if len(vectors):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))


def _ids(index: Any) -> np.ndarray:
    ids: np.ndarray = _faiss().vector_to_array(index.id_map).astype(np.int64)
    return ids


def _stored(index: Any) -> tuple[np.ndarray, np.ndarray]:
    """One id-mapped index's vectors and ids (decoded for IVF-SQ8)."""
    ids = _ids(index)
    if not len(ids):
        return np.zeros((0, int(index.d)), dtype=np.float32), ids
    vectors = np.vstack([index.reconstruct(int(i)) for i in ids])
    return vectors.astype(np.float32), ids


def _hits(index: Any, query: np.ndarray, k: int, params: Any) -> list[tuple[int, float]]:
    if not index.ntotal:
        return []
    scores, ids = index.search(query, min(k, int(index.ntotal)), params=params)
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]


def _owned_copy(index: Any, index_type: IndexType, mapped_from: Path | None) -> Any:
    """A copy of a main segment that owns its memory.

    For flat codes (flat, HNSW) ``faiss.clone_index`` keeps pointing into a memory-mapped
    file, which FAISS then aborts the process rather than change; a serialise round trip
    copies them. Mapped IVF lists can be neither cloned nor serialised, so a mapped IVF
    index is read again from its file.
    """
    faiss = _faiss()
    if index_type == "ivf" and mapped_from is not None:
        copy = faiss.read_index(str(mapped_from))
    elif index_type == "ivf":
        copy = faiss.clone_index(index)
    else:
        copy = faiss.deserialize_index(faiss.serialize_index(index))
    return _tuned(faiss, copy, index_type)


def _tuned(faiss: Any, index: Any, index_type: IndexType) -> Any:
    """Apply the search-time parameters that reading an index does not restore."""
    if index_type == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = HNSW_EF_SEARCH
    elif index_type == "ivf":
        faiss.extract_index_ivf(index).nprobe = IVF_NPROBE
    return index
