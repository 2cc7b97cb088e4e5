"""FAISS inner-product search over unit vectors, addressed by stable int64 row ids.

Exact (flat) search for small corpora; HNSW or IVF-SQ8 for large ones. Ids are
stable across incremental adds and removals, so chunk metadata never needs renumbering.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

IndexType = Literal["flat", "hnsw", "ivf"]
# Exact search costs ~0.2 us per vector per query on 2 cores (docs/performance-scale.md):
# up to 50k vectors it stays near 5 ms and perfect.
FLAT_MAX_VECTORS = 50_000
# HNSW keeps ~1.9 KB per 384-d vector (graph in RAM, vectors mmap-able); beyond this many
# vectors IVF-SQ8 (~0.5 KB per vector, inverted lists mmap'ed) keeps memory in bounds.
HNSW_MAX_VECTORS = 3_000_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
# recall@10 >= 0.95 at 1M vectors needs efSearch 512 (~1.2 ms); FAISS searches with
# max(efSearch, k) and the retriever asks for 300 hits, so small corpora are unaffected.
HNSW_EF_SEARCH = 512
# recall@10 >= 0.95 needs nprobe 8 at 1M (2,000 lists), 12 at 100k, 24 at 10k.
IVF_NPROBE = 24


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
        self, index: Any, index_type: IndexType, *, mapped_from: Path | None = None
    ) -> None:
        self._index = index
        self.index_type = index_type
        self._mapped_from = mapped_from
        """The file this index's storage is memory-mapped from, if it is."""

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
            lists = max(1, min(4096, int(np.sqrt(len(training)) * 2)))
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
        return int(self._index.ntotal)

    @property
    def dimension(self) -> int:
        return int(self._index.d)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        if len(vectors):
            self._index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64)
            )

    def remove(self, ids: np.ndarray) -> None:
        """Drop rows; HNSW cannot delete in place, so it is rebuilt from its own vectors."""
        faiss = _faiss()
        if not len(ids):
            return
        if self.index_type != "hnsw":
            self._index.remove_ids(faiss.IDSelectorBatch(ids.astype(np.int64)))
            return
        vectors, kept = self.export()
        keep = ~np.isin(kept, ids)
        fresh = DenseIndex.create(self.dimension, "hnsw")
        fresh.add(vectors[keep], kept[keep])
        self._index = fresh._index

    def export(self) -> tuple[np.ndarray, np.ndarray]:
        """All stored vectors and their ids (exact for flat/HNSW, decoded for IVF-SQ8)."""
        ids = self.ids()
        if not len(ids):
            return np.zeros((0, self.dimension), dtype=np.float32), ids
        vectors = np.vstack([self._index.reconstruct(int(i)) for i in ids])
        return vectors.astype(np.float32), ids

    def converted(self, index_type: IndexType) -> DenseIndex:
        """The same vectors in another index type, e.g. when a corpus outgrows exact search."""
        vectors, ids = self.export()
        fresh = DenseIndex.create(self.dimension, index_type, training=vectors)
        fresh.add(vectors, ids)
        return fresh

    def ids(self) -> np.ndarray:
        faiss = _faiss()
        ids: np.ndarray = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        return ids

    def search(
        self, vector: np.ndarray, k: int, *, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top ``k`` (row id, cosine) pairs, best first; FAISS's -1 padding dropped.

        Args:
            vector: a unit query vector.
            k: how many neighbours.
            allowed: optional row ids to restrict the search to (document filter).
        """
        faiss = _faiss()
        if self.size == 0 or k <= 0:
            return []
        params = None
        if allowed is not None:
            if not len(allowed):
                return []
            selector = faiss.IDSelectorBatch(allowed.astype(np.int64))
            params = self._search_params(selector)
        scores, ids = self._index.search(
            np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32),
            min(k, self.size),
            params=params,
        )
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def _search_params(self, selector: Any) -> Any:
        faiss = _faiss()
        if self.index_type == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=HNSW_EF_SEARCH)
        if self.index_type == "ivf":
            return faiss.SearchParametersIVF(sel=selector, nprobe=IVF_NPROBE)
        return faiss.SearchParameters(sel=selector)

    def clone(self) -> DenseIndex:
        """An independent copy that owns its memory.

        For flat codes (flat, HNSW) ``faiss.clone_index`` keeps pointing into a
        memory-mapped file, which FAISS then aborts the process rather than change; a
        serialise round trip copies them. Mapped IVF lists can be neither cloned nor
        serialised, so a mapped IVF index is read again from its file.
        """
        faiss = _faiss()
        if self.index_type == "ivf" and self._mapped_from is not None:
            copy = faiss.read_index(str(self._mapped_from))
        elif self.index_type == "ivf":
            copy = faiss.clone_index(self._index)
        else:
            copy = faiss.deserialize_index(faiss.serialize_index(self._index))
        return DenseIndex(_tuned(faiss, copy, self.index_type), self.index_type)

    def save(self, path: Path) -> None:
        faiss = _faiss()
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path, index_type: IndexType, *, mmap: bool = False) -> DenseIndex:
        faiss = _faiss()
        # MMAP maps IVF inverted lists, MMAP_IFC flat codes (flat, and HNSW's vectors; the
        # two cannot be combined): the pages live in the page cache, shared by every worker
        # process that maps the file.
        flags = 0
        if mmap:
            flags = faiss.IO_FLAG_MMAP if index_type == "ivf" else faiss.IO_FLAG_MMAP_IFC
        index = faiss.read_index(str(path), flags)
        return cls(_tuned(faiss, index, index_type), index_type, mapped_from=path if mmap else None)


def _tuned(faiss: Any, index: Any, index_type: IndexType) -> Any:
    """Apply the search-time parameters that reading an index does not restore."""
    if index_type == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = HNSW_EF_SEARCH
    elif index_type == "ivf":
        faiss.extract_index_ivf(index).nprobe = IVF_NPROBE
    return index
