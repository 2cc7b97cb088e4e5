"""Index scaling benchmark: build cost, memory, latency, recall and update cost by corpus size.

Run ``python -m bench.scale`` (``make bench-scale``). Each measurement runs in a fresh
spawned process, so resident-memory deltas belong to the thing measured and the
"fresh process loads the saved index with mmap" numbers are what a restarted server pays.

What is real and what is synthetic (embedding a million texts would take hours on 2 cores):

* Text is real: the corpus documents are normalised, split after 。！？； (a line without
  one gets a 。), and each passage joins 3-8 sentences drawn with replacement (fixed seed).
  Terms come from the real ``Tokenizer`` (with the glossary's words); each distinct sentence
  is tokenised once and a passage's terms are its sentences' terms, which is exactly what
  tokenising the passage gives because every sentence ends in a CJK stop (checked on a
  sample at every run).
* Vectors are synthetic, 384-d, unit length: ``normalise(1.0 * topic + 0.5 * doc + 1.3 *
  noise)`` with every direction ~N(0, I/384). One topic per 2,000 passages, one "document"
  per 20 consecutive passages: passages of one document have cosine ~0.43, of one topic
  ~0.34, otherwise ~0.0 (+-0.05). Queries are held out: ``normalise(passage + 1.0 * noise)``
  for distinct random passages (cosine ~0.71 to their source), so the exact top 10 is a
  near-tie mix of same-document and same-topic passages, as real embeddings give.
* Questions are real Chinese questions about the corpus (``QUESTIONS``), cycled over the runs.

Every index is the service's own code (``index/dense.py``, ``index/lexical.py``); only the
data is synthetic.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import importlib
import json
import math
import os
import platform
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, overload

import numpy as np

from index.chunking import chunk_document
from index.dense import DenseIndex, IndexType, choose_index_type
from index.documents import Document, DocumentMeta, load_corpus
from index.glossary import Glossary
from index.lexical import LexicalIndex, Tokenizer
from index.settings import Settings

DIM = 384
SEED = 20_251_125
BLOCK = 100_000  # vectors are generated in blocks of this many rows (a multiple of DOC_PASSAGES)
PASSAGES_PER_TOPIC = 2_000
DOC_PASSAGES = 20
# Chosen so the exact top 10 mixes same-document and same-topic passages with small gaps:
# at 50k, HNSW needs efSearch ~100 and IVF nprobe ~16 for recall@10 0.95 (a real-embedding
# difficulty; 0.8/0.8 made every top 10 one tight document, found at efSearch 16).
TOPIC_WEIGHT, DOC_WEIGHT, NOISE_WEIGHT = 1.0, 0.5, 1.3
QUERY_NOISE = 1.0
SENTENCES_PER_PASSAGE = (3, 8)
K = 10
WARMUP = 10
INDEX_TYPES: tuple[IndexType, ...] = ("flat", "hnsw", "ivf")
EF_SEARCH_GRID = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
NPROBE_GRID = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128)
TARGET_DENSE_P50_MS = 10.0
TARGET_RECALL = 0.95
TARGET_LEXICAL_P50_MS = 50.0
TARGET_ADD_S = 2.0
MEMORY_BUDGET_GB = 12.0
ADD_DOC_CHARS = 5_000
# A phrase no corpus sentence contains, so the added document must be findable by it.
NEW_DOC_MARKER = "星火燎原量子计算示范工程"
QUESTIONS = (
    "北京独角兽企业有多少家",
    "技术合同成交额是多少",
    "研发经费投入强度是多少",
    "基础研究经费比重",
    "每万人口高价值发明专利拥有量",
    "中关村示范区企业总收入",
    "高被引科学家数量",
    "国际科技创新中心指数排名",
    "怀柔综合性国家科学中心建设",
    "支持外籍科学家领衔承担科研项目",
    "新型研发机构改革",
    "加快推动北京国际科技创新中心建设的工作方案",
)
_SENTENCE = re.compile(r"[^。！？；]+[。！？；]?")
_TERMINAL = "。！？；"

faiss: Any = importlib.import_module("faiss")  # its bundled stubs lack HNSW params and downcasts


# ---- measuring --------------------------------------------------------------------------------


def memory_mib() -> dict[str, float]:
    """This process's resident memory in MiB: total, anonymous, file-backed (mmap) and peak.

    /proc is read first because only it separates mmap'ed pages from private ones; psutil
    (total only) is the fallback where there is no /proc.
    """
    status = Path("/proc/self/status")
    if status.exists():
        fields: dict[str, float] = {}
        for line in status.read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
        return {
            "rss": fields["VmRSS"],
            "anon": fields.get("RssAnon", math.nan),
            "file": fields.get("RssFile", math.nan),
            "peak": fields.get("VmHWM", math.nan),
        }
    psutil = importlib.import_module("psutil")
    rss = float(psutil.Process().memory_info().rss) / 2**20
    return {"rss": rss, "anon": math.nan, "file": math.nan, "peak": math.nan}


def reset_peak_memory() -> None:
    """Restart the kernel's peak-RSS counter so a peak belongs to the step that follows."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def release_freed_memory() -> None:
    """Collect garbage and return freed heap to the OS, so RSS shows only what is still held."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def folder_mib(path: Path) -> float:
    """Disk space of a file or folder; a hard-linked file counts once."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    sizes = {(s.st_dev, s.st_ino): s.st_size for s in (p.stat() for p in files)}
    return sum(sizes.values()) / 2**20


def percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p99 in milliseconds."""
    ms = np.asarray(samples_s) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def timed(run: Callable[[int], object], count: int) -> list[float]:
    """Seconds per call of ``run(i)`` after ``WARMUP`` untimed calls (page cache, JIT, caches)."""
    for i in range(min(WARMUP, count)):
        run(i)
    samples = []
    for i in range(count):
        start = time.perf_counter()
        run(i)
        samples.append(time.perf_counter() - start)
    return samples


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- the synthetic corpus ---------------------------------------------------------------------


@dataclass(frozen=True)
class SentencePool:
    """Real sentences of the corpus and their terms from the real tokenizer."""

    sentences: list[str]
    tokens: list[list[str]]


def make_tokenizer(settings: Settings) -> Tokenizer:
    """The tokenizer the service builds: jieba plus the glossary's Chinese terms."""
    return Tokenizer(Glossary.load(settings.glossary_path).chinese_terms)


def sentence_pool(settings: Settings, tokenizer: Tokenizer) -> SentencePool:
    """Sentences split after 。！？；; a piece without one gets a 。 so terms never span two."""
    sentences: list[str] = []
    for document in load_corpus(settings.corpus_dir):
        for line in document.text.split("\n"):
            for match in _SENTENCE.finditer(line):
                piece = match.group().strip()
                if len(piece) < 2:
                    continue
                sentences.append(piece if piece[-1] in _TERMINAL else piece + "。")
    return SentencePool(sentences, [tokenizer.tokenize(s) for s in sentences])


def real_text() -> tuple[Settings, Tokenizer, SentencePool]:
    """What every text phase starts from: settings, the real tokenizer, the sentence pool."""
    settings = Settings()
    tokenizer = make_tokenizer(settings)
    return settings, tokenizer, sentence_pool(settings, tokenizer)


@dataclass(frozen=True)
class Layout:
    """Which sentences make up each passage: ``ids[offsets[i]:offsets[i + 1]]``."""

    offsets: np.ndarray
    ids: np.ndarray


def passage_layout(n: int, sentences: int, seed: int) -> Layout:
    """3-8 sentences per passage, drawn with replacement; identical for a given n and seed."""
    rng = np.random.default_rng([seed, n, 1])
    low, high = SENTENCES_PER_PASSAGE
    lengths = rng.integers(low, high + 1, size=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Layout(offsets, rng.integers(0, sentences, size=int(offsets[-1]), dtype=np.int32))


class PassageTokens(Sequence[list[str]]):
    """Passage term lists made on demand, so a million of them are never held twice."""

    def __init__(self, pool: SentencePool, layout: Layout) -> None:
        self._pool = pool
        self._offsets = layout.offsets.tolist()
        self._ids = layout.ids

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @overload
    def __getitem__(self, index: int) -> list[str]: ...

    @overload
    def __getitem__(self, index: slice) -> list[list[str]]: ...

    def __getitem__(self, index: int | slice) -> list[str] | list[list[str]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._join(self._offsets[index], self._offsets[index + 1])

    def __iter__(self) -> Iterator[list[str]]:
        for i in range(len(self)):
            yield self._join(self._offsets[i], self._offsets[i + 1])

    def _join(self, start: int, end: int) -> list[str]:
        terms: list[str] = []
        for sentence in self._ids[start:end].tolist():
            terms.extend(self._pool.tokens[sentence])
        return terms

    def text(self, index: int) -> str:
        start, end = self._offsets[index], self._offsets[index + 1]
        return "".join(self._pool.sentences[s] for s in self._ids[start:end].tolist())

    def mean_length(self) -> float:
        """BM25's average document length (an empty passage counts 1, as LexicalIndex pads it)."""
        sentence_lengths = np.array([len(t) for t in self._pool.tokens], dtype=np.int64)
        per_passage = np.add.reduceat(sentence_lengths[self._ids], np.array(self._offsets[:-1]))
        return float(np.maximum(per_passage, 1).mean())


def _unit(rows: np.ndarray) -> np.ndarray:
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def topic_centres(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, n, 2])
    topics = max(8, n // PASSAGES_PER_TOPIC)
    return _unit(rng.standard_normal((topics, DIM), dtype=np.float32))


def vector_block(n: int, block: int, centres: np.ndarray, seed: int) -> np.ndarray:
    """Rows ``block * BLOCK ...`` of the corpus: same-seeded, so any process can remake them."""
    rng = np.random.default_rng([seed, n, 3, block])
    rows = min(n, (block + 1) * BLOCK) - block * BLOCK
    owner = np.arange(rows) // DOC_PASSAGES
    doc_topic = rng.integers(0, len(centres), size=int(owner[-1]) + 1)
    doc_dir = rng.standard_normal((len(doc_topic), DIM), dtype=np.float32) / math.sqrt(DIM)
    out = rng.standard_normal((rows, DIM), dtype=np.float32)
    out *= NOISE_WEIGHT / math.sqrt(DIM)
    out += TOPIC_WEIGHT * centres[doc_topic[owner]]
    out += DOC_WEIGHT * doc_dir[owner]
    return _unit(out)


def passage_vectors(n: int, seed: int) -> np.ndarray:
    centres = topic_centres(n, seed)
    out = np.empty((n, DIM), dtype=np.float32)
    for block in range(math.ceil(n / BLOCK)):
        out[block * BLOCK : (block + 1) * BLOCK] = vector_block(n, block, centres, seed)
    return out


def held_out_queries(vectors: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Query vectors near distinct random passages; none of them is in the index."""
    rng = np.random.default_rng([seed, len(vectors), 4])
    rows = rng.choice(len(vectors), size=count, replace=False)
    noise = rng.standard_normal((count, DIM), dtype=np.float32) * (QUERY_NOISE / math.sqrt(DIM))
    return _unit(vectors[rows] + noise)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Ground truth: exact inner-product top ``k`` row ids, merged block by block."""
    best_scores = np.empty((len(queries), 0), dtype=np.float32)
    best_rows = np.empty((len(queries), 0), dtype=np.int64)
    for start in range(0, len(vectors), BLOCK):
        block = queries @ vectors[start : start + BLOCK].T
        local = np.argpartition(-block, k - 1, axis=1)[:, :k]
        scores = np.concatenate([best_scores, np.take_along_axis(block, local, axis=1)], axis=1)
        rows = np.concatenate([best_rows, local + start], axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(scores, order, axis=1)
        best_rows = np.take_along_axis(rows, order, axis=1)
    return best_rows


def new_document(pool: SentencePool, seed: int) -> Document:
    """A ~5,000-character document of pool sentences, four to a paragraph, with a new term."""
    rng = np.random.default_rng([seed, 5])
    paragraphs: list[str] = [f"本方案所称{NEW_DOC_MARKER}由北京市统一组织实施。"]
    length = len(paragraphs[0])
    while length < ADD_DOC_CHARS:
        picked = rng.integers(0, len(pool.sentences), size=4).tolist()
        paragraph = "".join(pool.sentences[s] for s in picked)
        paragraphs.append(paragraph)
        length += len(paragraph) + 1
    meta = DocumentMeta(id="bench-new-doc", title_zh="基准新增文件", title_en="Bench", source="-")
    return Document(meta=meta, text="\n".join(paragraphs))


def synthetic_documents(n: int, settings: Settings, pool: SentencePool) -> list[Document]:
    """Documents of pool sentences, ~20 passages each, until ``n`` passages."""
    documents: list[Document] = []
    passages = 0
    while passages < n:
        text = new_document(pool, SEED + len(documents) + 1).text
        meta = DocumentMeta(
            id=f"doc-{len(documents)}", title_zh="文件", title_en="Document", source="-"
        )
        documents.append(Document(meta=meta, text=text))
        passages += len(
            chunk_document(
                documents[-1],
                chunk_size=settings.chunk_size,
                chunk_overlap=settings.chunk_overlap,
                min_chars=settings.min_chunk_chars,
            )
        )
    return documents


# ---- phases (each in a fresh process) ---------------------------------------------------------


def _dense_path(folder: Path, index_type: IndexType) -> Path:
    return folder / f"dense-{index_type}.faiss"


def _held(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """What a build keeps resident (after freeing its garbage) and what it peaked at."""
    held = after["rss"] - before["rss"]
    return {
        "rss_held_mib": held,
        "peak_delta_mib": after["peak"] - before["rss"],
        "bytes_per_passage": held * 2**20 / n,
    }


def phase_dense_build(n: int, index_type: IndexType, folder: Path, queries: int) -> dict[str, Any]:
    """Build one index type over the synthetic vectors; the flat run also writes ground truth."""
    log(f"{n:,}: generating vectors for {index_type}")
    vectors = passage_vectors(n, SEED)
    if index_type == "flat":
        query_vectors = held_out_queries(vectors, queries, SEED)
        np.save(folder / "queries.npy", query_vectors)
        np.save(folder / "truth.npy", exact_top_k(vectors, query_vectors, K))
    gc.collect()
    reset_peak_memory()
    before = memory_mib()
    start = time.perf_counter()
    dense = DenseIndex.create(DIM, index_type, training=vectors if index_type == "ivf" else None)
    dense.add(vectors, np.arange(n, dtype=np.int64))
    build_s = time.perf_counter() - start
    release_freed_memory()
    after = memory_mib()
    start = time.perf_counter()
    dense.save(_dense_path(folder, index_type))
    log(f"{n:,}: {index_type} built in {build_s:.1f} s")
    return {
        "build_s": build_s,
        "save_s": time.perf_counter() - start,
        "disk_mib": folder_mib(_dense_path(folder, index_type)),
        **_held(before, after, n),
    }


def phase_lexical_build(n: int, folder: Path) -> dict[str, Any]:
    """Build BM25 with the real LexicalIndex over real terms; check the term shortcut."""
    _, tokenizer, pool = real_text()
    tokens = PassageTokens(pool, passage_layout(n, len(pool.sentences), SEED))
    sample = np.random.default_rng([SEED, n, 6]).choice(n, size=min(n, 200), replace=False)
    start = time.perf_counter()
    mismatched = sum(
        Counter(tokenizer.tokenize(tokens.text(int(i)))) != Counter(tokens[int(i)]) for i in sample
    )
    tokenise_ms = (time.perf_counter() - start) * 1000 / len(sample)
    chars = float(np.mean([len(tokens.text(int(i))) for i in sample]))
    gc.collect()
    reset_peak_memory()
    before = memory_mib()
    start = time.perf_counter()
    lexical = LexicalIndex(tokens)
    build_s = time.perf_counter() - start
    release_freed_memory()
    after = memory_mib()
    lexical.save(folder / "bm25")
    log(f"{n:,}: BM25 built in {build_s:.1f} s")
    return {
        "build_s": build_s,
        "tokenise_ms_per_passage": tokenise_ms,
        "tokenise_all_s_estimate": tokenise_ms * n / 1000,
        "term_shortcut_mismatches": f"{mismatched}/{len(sample)}",
        "pool_sentences": len(pool.sentences),
        "mean_chars": chars,
        "mean_terms": tokens.mean_length(),
        "vocabulary": lexical.stats["vocabulary"],
        "disk_mib": folder_mib(folder / "bm25"),
        **_held(before, after, n),
    }


def _resident(when: str, base: dict[str, float], now: dict[str, float]) -> dict[str, float]:
    """RSS growth since ``base``, split into private (anon) and mmap'ed file pages."""
    return {
        f"rss_{when}_mib": now["rss"] - base["rss"],
        f"file_{when}_mib": now["file"] - base["file"],
    }


def _set_search_param(dense: DenseIndex, value: int) -> None:
    inner = dense._index
    if dense.index_type == "hnsw":
        faiss.downcast_index(inner.index).hnsw.efSearch = value
    elif dense.index_type == "ivf":
        faiss.extract_index_ivf(inner).nprobe = value


def _production_depths() -> tuple[int, int]:
    """(passages per retriever, dense vectors fetched for them) as the retriever asks."""
    retriever = importlib.import_module("index.retriever")
    candidates = Settings().candidates
    return candidates, candidates * int(getattr(retriever, "VECTORS_PER_PASSAGE", 1))


def phase_dense_query(n: int, index_type: IndexType, folder: Path, threads: int) -> dict[str, Any]:
    """Load one saved index with mmap in this fresh process; sweep its knob; time fused search."""
    retriever = importlib.import_module("index.retriever")
    settings = Settings()
    faiss.omp_set_num_threads(threads)
    queries = np.load(folder / "queries.npy")
    truth = np.load(folder / "truth.npy")
    tokenizer = make_tokenizer(settings)
    gc.collect()
    base = memory_mib()
    start = time.perf_counter()
    dense = DenseIndex.load(_dense_path(folder, index_type), index_type, mmap=True)
    load_s = time.perf_counter() - start
    loaded = memory_mib()

    def recall_and_latency() -> dict[str, float]:
        samples = timed(lambda i: dense.search(queries[i], K, threads=threads), len(queries))
        found = [[row for row, _ in dense.search(q, K, threads=threads)] for q in queries]
        hits = [len(set(f) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)]
        return {**percentiles(samples), "recall_at_10": float(np.mean(hits))}

    sweep: list[dict[str, Any]] = []
    grid: tuple[int, ...] = {"flat": (0,), "hnsw": EF_SEARCH_GRID, "ivf": NPROBE_GRID}[index_type]
    for value in grid:
        _set_search_param(dense, value)
        sweep.append({"param": value, **recall_and_latency()})
        log(f"{n:,}: {index_type} param={value} {sweep[-1]}")
    passing = [s for s in sweep if s["recall_at_10"] >= TARGET_RECALL]
    chosen = passing[0] if passing else max(sweep, key=lambda s: s["recall_at_10"])
    _set_search_param(dense, int(chosen["param"]))
    candidates, depth = _production_depths()
    deep = percentiles(
        timed(lambda i: dense.search(queries[i], depth, threads=threads), len(queries))
    )
    result: dict[str, Any] = {
        "load_s": load_s,
        **_resident("after_load", base, loaded),
        "threads": threads,
        "sweep": sweep,
        "chosen": chosen,
        "production_depth": depth,
        "production_depth_latency": deep,
    }
    if index_type == "flat":
        every = os.cpu_count() or 1
        result["all_threads"] = percentiles(
            timed(lambda i: dense.search(queries[i], K, threads=every), min(50, len(queries)))
        )
    result.update(_resident("after_queries", base, memory_mib()))

    lexical = LexicalIndex.load(folder / "bm25", size=n, mmap=True)

    def fused(i: int) -> None:
        vector_hits = dense.search(queries[i], depth, threads=threads)[:candidates]
        terms = tokenizer.tokenize(QUESTIONS[i % len(QUESTIONS)])
        word_hits = lexical.search(terms, k=candidates)
        retriever.weighted_rrf(
            [
                (settings.dense_weight, [row for row, _ in vector_hits]),
                (settings.lexical_weight, [row for row, _ in word_hits]),
            ],
            k=settings.rrf_k,
        )

    result["fused"] = percentiles(timed(fused, len(queries)))
    return result


def _overlap(a: list[tuple[int, float]], b: list[tuple[int, float]], k: int = K) -> float:
    left, right = {r for r, _ in a[:k]}, {r for r, _ in b[:k]}
    return len(left & right) / max(1, len(left))


def phase_lexical_query(n: int, folder: Path, queries: int) -> dict[str, Any]:
    """Load BM25 with mmap in a fresh process; time the service's search."""
    settings = Settings()
    tokenizer = make_tokenizer(settings)
    terms = [tokenizer.tokenize(q) for q in QUESTIONS]
    tokenise = percentiles(timed(lambda i: tokenizer.tokenize(QUESTIONS[i % len(QUESTIONS)]), 200))
    gc.collect()
    base = memory_mib()
    lexical = LexicalIndex.load(folder / "bm25", size=n, mmap=True)
    loaded = memory_mib()
    candidates, _ = _production_depths()
    samples = timed(lambda i: lexical.search(terms[i % len(terms)], k=candidates), queries)
    result: dict[str, Any] = {
        **_resident("after_load", base, loaded),
        "tokenise_question": tokenise,
        "query_terms": float(np.mean([len(t) for t in terms])),
        "service": percentiles(samples),
    }
    log(f"{n:,}: BM25 service search {result['service']}")
    result.update(_resident("after_queries", base, memory_mib()))
    return result


def phase_update(n: int, folder: Path) -> dict[str, Any]:
    """Add one ~5,000-character document to the n-passage index, as ``with_document`` does."""
    settings, tokenizer, pool = real_text()
    tokens = PassageTokens(pool, passage_layout(n, len(pool.sentences), SEED))
    document = new_document(pool, SEED)
    chunks = chunk_document(
        document,
        chunk_size=settings.chunk_size,
        chunk_overlap=settings.chunk_overlap,
        min_chars=settings.min_chunk_chars,
    )
    result: dict[str, Any] = {"document_chars": len(document.text), "passages": len(chunks)}

    start = time.perf_counter()
    new_tokens = [tokenizer.tokenize(chunk.context_text) for chunk in chunks]
    result["tokenise_s"] = time.perf_counter() - start

    rng = np.random.default_rng([SEED, 7])
    centre = topic_centres(n, SEED)[0] + DOC_WEIGHT * rng.standard_normal(DIM) / math.sqrt(DIM)
    noise = rng.standard_normal((len(chunks), DIM)) * (NOISE_WEIGHT / math.sqrt(DIM))
    vectors = _unit((centre + noise).astype(np.float32))
    ids = np.arange(n, n + len(chunks), dtype=np.int64)
    for index_type in INDEX_TYPES:
        path = _dense_path(folder, index_type)
        if not path.exists():
            continue
        dense = DenseIndex.load(path, index_type, mmap=True)  # as the service holds it
        start = time.perf_counter()
        dense.extended(vectors, ids)  # what an add does
        extended = time.perf_counter()
        dense.compacted().add(vectors, ids)  # what a compaction does
        result[f"dense_{index_type}"] = {
            "extend_s": extended - start,
            "compact_s": time.perf_counter() - extended,
        }
        del dense
        gc.collect()

    everything = [*tokens, *new_tokens]
    start = time.perf_counter()
    rebuilt = LexicalIndex(everything)
    result["lexical_rebuild_s"] = time.perf_counter() - start
    del everything
    main = LexicalIndex.load(folder / "bm25", size=n)
    start = time.perf_counter()
    segmented = main.extended(new_tokens)
    result["lexical_delta_s"] = time.perf_counter() - start

    questions = [*QUESTIONS, NEW_DOC_MARKER]
    terms = [tokenizer.tokenize(q) for q in questions]
    full = [rebuilt.search(t, k=K) for t in terms]
    seg = [segmented.search(t, k=K) for t in terms]
    drift = [
        abs(score - dict(b).get(row, 0.0)) / score
        for a, b in zip(full, seg, strict=True)
        for row, score in a
        if row in dict(b)
    ]
    result["delta_vs_rebuild"] = {
        "top10_agreement": float(np.mean([_overlap(a, b) for a, b in zip(full, seg, strict=True)])),
        "max_relative_score_diff": max(drift, default=0.0),
        "new_document_found_first": bool(seg[-1]) and seg[-1][0][0] >= n,
    }
    result["lexical_delta_search"] = percentiles(
        timed(lambda i: segmented.search(terms[i % len(terms)], k=50), 100)
    )
    default_type = choose_index_type(n)
    dense_steps = result.get(f"dense_{default_type}", {})
    result["default_index_type"] = default_type
    result["total_rebuild_s"] = (
        result["tokenise_s"] + dense_steps.get("compact_s", math.nan) + result["lexical_rebuild_s"]
    )
    result["total_delta_s"] = (
        result["tokenise_s"] + dense_steps.get("extend_s", math.nan) + result["lexical_delta_s"]
    )
    return result


class SyntheticEmbedder:
    """Stands in for the model where a benchmark needs many vectors fast: unit vectors from
    a seeded generator. The index code around it (chunking, BM25, FAISS, saving) is real."""

    model_id = "synthetic"
    dimension = DIM

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng([seed, 8])

    def embed_passages(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        return _unit(self._rng.standard_normal((len(texts), DIM), dtype=np.float32))


def phase_persist(n: int, folder: Path) -> dict[str, Any]:
    """Add a ~5,000-character document to a real n-passage index end to end, as the admin
    API does: ``with_document`` (new vectors synthetic), then ``IndexStore.save``."""
    from index.build import build_snapshot, with_document, without_document
    from index.store import IndexStore

    settings, tokenizer, pool = real_text()
    embedder: Any = SyntheticEmbedder(SEED)
    documents = synthetic_documents(n, settings, pool)
    log(f"{n:,}: building a real index of {len(documents):,} documents")
    start = time.perf_counter()
    snapshot = build_snapshot(documents, embedder=embedder, tokenizer=tokenizer, settings=settings)
    result: dict[str, Any] = {
        "build_s": time.perf_counter() - start,
        "passages": len(snapshot.chunks),
        "vectors": snapshot.dense.size,
        "index_type": snapshot.dense.index_type,
    }
    store = IndexStore(folder / "store")
    start = time.perf_counter()
    store.save(snapshot)
    result["full_save_s"] = time.perf_counter() - start
    result["version_mib"] = folder_mib(store.root / "versions")
    log(f"{n:,}: built in {result['build_s']:.0f} s, saved in {result['full_save_s']:.1f} s")

    served = store.load(mmap=True)  # what the service holds after a restart
    added_doc = new_document(pool, SEED)
    adds: list[dict[str, float]] = []
    for number in range(3):
        document = Document(
            meta=replace(added_doc.meta, id=f"bench-new-doc-{number}"), text=added_doc.text
        )
        start = time.perf_counter()
        served = with_document(served, document, embedder=embedder, tokenizer=tokenizer)
        derived = time.perf_counter()
        store.save(served)
        adds.append({"derive_s": derived - start, "save_s": time.perf_counter() - derived})
    result["adds"] = adds
    result["add_s"] = float(np.median([a["derive_s"] + a["save_s"] for a in adds]))
    result["store_mib"] = folder_mib(store.root / "versions")
    removals: dict[str, dict[str, float]] = {}
    # The last upload withdrawn (only the deltas change), then a document of the main
    # segment (new main segments: a full rebuild of both indexes).
    for kind, doc_id in (("added", "bench-new-doc-2"), ("main", "doc-0")):
        start = time.perf_counter()
        served = without_document(served, doc_id)
        derived = time.perf_counter()
        store.save(served)
        removals[kind] = {"derive_s": derived - start, "save_s": time.perf_counter() - derived}
        log(f"{n:,}: removed a {kind} document in {time.perf_counter() - start:.1f} s")
    result["removals"] = removals
    result["document_chars"] = len(added_doc.text)
    return result


def run_isolated(function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run one phase in a freshly spawned process and return its result."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


# ---- reporting --------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (readable as plain text too); nothing for no rows."""
    if not rows:
        return ""

    def cell(value: object) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return "-"
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _param_label(index_type: str, param: int) -> str:
    return {"flat": "exact", "hnsw": f"efSearch={param}", "ivf": f"nprobe={param}"}[index_type]


def _mmap_cell(query: dict[str, Any], when: str) -> str:
    rss, file = query.get(f"rss_{when}_mib"), query.get(f"file_{when}_mib")
    return "-" if rss is None or file is None else f"{rss:,.0f} ({file:,.0f})"


def size_report(n: int, data: dict[str, Any]) -> str:
    """The tables for one corpus size."""
    parts = [f"### {n:,} passages"]
    if "milvus" in data:
        from bench.scale_milvus import milvus_report

        parts.append(
            "Local store and Milvus Lite, same documents:\n\n" + milvus_report(n, data["milvus"])
        )
    builds: dict[str, Any] = data.get("dense_build", {})
    queries: dict[str, Any] = data.get("dense_query", {})
    lexical = data.get("lexical_build")
    memory_rows: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        (f"dense {t}", builds[t], queries.get(t, {})) for t in INDEX_TYPES if t in builds
    ]
    if lexical:
        memory_rows.append(("BM25 (LexicalIndex)", lexical, data.get("lexical_query", {})))
    rows: list[list[object]] = [
        [
            name,
            b["build_s"],
            b.get("disk_mib", math.nan),
            b["peak_delta_mib"],
            b["rss_held_mib"],
            b["bytes_per_passage"],
            _mmap_cell(q, "after_load"),
            _mmap_cell(q, "after_queries"),
        ]
        for name, b, q in memory_rows
    ]
    parts.append(
        table(
            [
                "index",
                "build s",
                "disk MiB",
                "build peak MiB",
                "held MiB",
                "bytes/passage",
                "fresh mmap load MiB (file)",
                "after queries MiB (file)",
            ],
            rows,
        )
    )
    rows = []
    for index_type in INDEX_TYPES:
        q = queries.get(index_type)
        if q:
            c = q["chosen"]
            rows.append(
                [
                    f"dense {index_type} ({_param_label(index_type, c['param'])})",
                    c["p50_ms"],
                    c["p99_ms"],
                    c["recall_at_10"],
                    q["production_depth_latency"]["p50_ms"],
                    q["fused"]["p50_ms"],
                    q["fused"]["p99_ms"],
                ]
            )
    lq = data.get("lexical_query")
    if lq:
        r = lq["service"]
        rows.append(["BM25", r["p50_ms"], r["p99_ms"], "", "", "", ""])
    depth = next((q["production_depth"] for q in queries.values()), "?")
    parts.append(
        table(
            [
                "search",
                "p50 ms",
                "p99 ms",
                "recall@10",
                f"p50 ms k={depth}",
                "fused p50 ms",
                "fused p99 ms",
            ],
            rows,
        )
    )
    for index_type in ("hnsw", "ivf"):
        q = queries.get(index_type)
        if q:
            parts.append(f"{index_type} sweep (k={K}, {q['threads']} thread):")
            parts.append(
                table(
                    ["param", "p50 ms", "p99 ms", "recall@10"],
                    [
                        [
                            _param_label(index_type, s["param"]),
                            s["p50_ms"],
                            s["p99_ms"],
                            s["recall_at_10"],
                        ]
                        for s in q["sweep"]
                    ],
                )
            )
    update = data.get("update")
    if update:
        default = update["default_index_type"]
        dense = update.get(f"dense_{default}", {})
        parts.append(
            f"Adding a {update['document_chars']:,}-character document "
            f"({update['passages']} passages), dense index {default}:"
        )
        parts.append(
            table(
                [
                    "step",
                    "full BM25 rebuild (compaction)",
                    "BM25 delta segment (what an add does)",
                ],
                [
                    ["tokenise passages", *[update["tokenise_s"]] * 2],
                    [
                        "dense (compacted copy + add / delta)",
                        dense.get("compact_s", math.nan),
                        dense.get("extend_s", math.nan),
                    ],
                    ["BM25", update["lexical_rebuild_s"], update["lexical_delta_s"]],
                    ["total s", update["total_rebuild_s"], update["total_delta_s"]],
                ],
            )
        )
    persist = data.get("persist")
    if persist:
        parts.append(
            f"Adding a {persist['document_chars']:,}-character document to a real index of "
            f"{persist['passages']:,} passages ({persist['vectors']:,} {persist['index_type']} "
            f"vectors; built in {persist['build_s']:.0f} s, a full save takes "
            f"{persist['full_save_s']:.1f} s and {persist['version_mib']:.0f} MiB), three times "
            f"in a row, as the admin API does (new vectors synthetic):"
        )
        parts.append(
            table(
                ["add", "with_document s", "save s", "total s"],
                [
                    [i + 1, a["derive_s"], a["save_s"], a["derive_s"] + a["save_s"]]
                    for i, a in enumerate(persist["adds"])
                ],
            )
        )
        parts.append(
            f"Disk after the adds, three versions kept (hard links counted once): "
            f"{persist['store_mib']:.0f} MiB."
        )
        removals = persist.get("removals", {})
        if removals:
            parts.append(
                table(
                    ["remove", "without_document s", "save s", "total s"],
                    [
                        [kind, r["derive_s"], r["save_s"], r["derive_s"] + r["save_s"]]
                        for kind, r in removals.items()
                    ],
                )
            )
    return "\n\n".join(part for part in parts if part)


def targets(report: dict[str, Any], update_size: int) -> list[dict[str, Any]]:
    """PASS/FAIL per target, judged at the largest measured size (1M when it was run)."""
    sizes = report["sizes"]
    largest = max((int(s) for s in sizes if sizes[s].get("dense_query")), default=None)
    out: list[dict[str, Any]] = []
    if largest is not None:
        data = sizes[str(largest)]
        for index_type, q in data["dense_query"].items():
            c = q["chosen"]
            ok = c["p50_ms"] <= TARGET_DENSE_P50_MS and c["recall_at_10"] >= TARGET_RECALL
            goal = f"p50 <= {TARGET_DENSE_P50_MS:g} ms and recall@10 >= {TARGET_RECALL}"
            out.append(
                {
                    "target": f"dense {index_type} at {largest:,}: {goal}",
                    "measured": f"{c['p50_ms']:.2f} ms, recall {c['recall_at_10']:.3f} "
                    f"({_param_label(index_type, c['param'])})",
                    "pass": ok,
                }
            )
        lq = data.get("lexical_query")
        if lq:
            r = lq["service"]
            out.append(
                {
                    "target": f"BM25 at {largest:,}: p50 <= {TARGET_LEXICAL_P50_MS:g} ms",
                    "measured": f"{r['p50_ms']:.1f} ms",
                    "pass": r["p50_ms"] <= TARGET_LEXICAL_P50_MS,
                }
            )
    budget_mib = MEMORY_BUDGET_GB * 1024
    if largest is not None:
        data = sizes[str(largest)]
        if "lexical_build" in data:
            peak = data["lexical_build"]["peak_delta_mib"]
            out.append(
                {
                    "target": f"BM25 build peak at {largest:,} <= {MEMORY_BUDGET_GB:g} GB",
                    "measured": f"{peak / 1024:.1f} GB",
                    "pass": peak <= budget_mib,
                }
            )
    persist = sizes.get(str(update_size), {}).get("persist")
    if persist:
        out.append(
            {
                "target": f"add a 5k-char document to {update_size:,} passages, saved "
                f"(what the admin API does) <= {TARGET_ADD_S:g} s",
                "measured": f"{persist['add_s']:.2f} s",
                "pass": persist["add_s"] <= TARGET_ADD_S,
            }
        )
    update = sizes.get(str(update_size), {}).get("update")
    if update:
        for name, key in (
            ("full rebuild, compaction only", "total_rebuild_s"),
            ("delta segment, what an add does", "total_delta_s"),
        ):
            if key not in update:
                continue
            out.append(
                {
                    "target": f"add a 5k-char document to {update_size:,} ({name}) <= "
                    f"{TARGET_ADD_S:g} s",
                    "measured": f"{update[key]:.2f} s",
                    "pass": update[key] <= TARGET_ADD_S,
                }
            )
    return out


def render(report: dict[str, Any], update_size: int) -> str:
    sizes = sorted(report["sizes"], key=int)
    parts = [size_report(int(n), report["sizes"][n]) for n in sizes]
    rows = [
        [t["target"], t["measured"], "PASS" if t["pass"] else "FAIL"]
        for t in targets(report, update_size)
    ]
    parts.append("### Targets\n\n" + table(["target", "measured", "result"], rows))
    return "\n\n".join(parts)


def machine() -> dict[str, Any]:
    versions = {}
    for name in ("numpy", "faiss", "bm25s", "jieba"):
        module = importlib.import_module(name)
        versions[name] = str(getattr(module, "__version__", "?"))
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()),
        "versions": versions,
    }


# ---- driver -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--sizes", default="10000,100000,1000000", help="corpus sizes in passages, comma-separated"
    )
    parser.add_argument("--queries", type=int, default=200, help="timed queries per search")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("var/reports/scale.json"),
        help="JSON report; a Markdown copy goes next to it",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("var/bench-scale"),
        help="where indexes are built (one folder per size)",
    )
    parser.add_argument(
        "--phases",
        default="build,query,update,persist,milvus",
        help="any of build,query,update,persist,milvus; later phases reuse kept builds",
    )
    parser.add_argument(
        "--milvus-sizes",
        default="10000,100000",
        help="the sizes the milvus phase (local store and Milvus Lite side by side) runs at "
        "(at 1M, Milvus Lite's Python engine takes hours to load)",
    )
    parser.add_argument("--types", default=",".join(INDEX_TYPES), help="dense index types")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="FAISS threads while querying (a server answers one query per "
        "request; see the docs for why 1)",
    )
    parser.add_argument(
        "--update-size",
        type=int,
        default=100_000,
        help="the size the incremental-update measurement runs at",
    )
    parser.add_argument("--keep", action="store_true", help="keep built indexes afterwards")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    phases = set(args.phases.split(","))
    types: list[IndexType] = [t for t in INDEX_TYPES if t in args.types.split(",")]
    report: dict[str, Any] = {"sizes": {}}
    if args.out.exists():  # phases run separately add to one report
        report = json.loads(args.out.read_text(encoding="utf-8"))
    report["machine"] = machine()
    report["synthetic"] = {
        "vectors": f"unit(normalise({TOPIC_WEIGHT}*topic + {DOC_WEIGHT}*doc + "
        f"{NOISE_WEIGHT}*noise)), directions ~N(0, I/{DIM}); one topic per "
        f"{PASSAGES_PER_TOPIC} passages, one document per {DOC_PASSAGES} consecutive passages",
        "queries": f"normalise(passage + {QUERY_NOISE}*noise), distinct random passages",
        "passages": f"{SENTENCES_PER_PASSAGE[0]}-{SENTENCES_PER_PASSAGE[1]} real sentences, "
        "drawn with replacement",
        "seed": SEED,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        args.out.with_suffix(".md").write_text(
            render(report, args.update_size) + "\n", encoding="utf-8"
        )

    for n in sizes:
        folder = args.workdir / str(n)
        folder.mkdir(parents=True, exist_ok=True)
        data = report["sizes"].setdefault(str(n), {})
        if "build" in phases:
            builds = data.setdefault("dense_build", {})
            for index_type in types:
                builds[index_type] = run_isolated(
                    phase_dense_build, n, index_type, folder, args.queries
                )
                save()
            data["lexical_build"] = run_isolated(phase_lexical_build, n, folder)
            save()
        if "query" in phases:
            queries = data.setdefault("dense_query", {})
            for index_type in types:
                queries[index_type] = run_isolated(
                    phase_dense_query, n, index_type, folder, args.threads
                )
                save()
            data["lexical_query"] = run_isolated(phase_lexical_query, n, folder, args.queries)
            save()
        if "update" in phases and n == args.update_size:
            data["update"] = run_isolated(phase_update, n, folder)
            save()
        if "persist" in phases and n == args.update_size:
            data["persist"] = run_isolated(phase_persist, n, folder)
            save()
        if "milvus" in phases and str(n) in args.milvus_sizes.split(","):
            from bench.scale_milvus import phase_milvus

            data["milvus"] = run_isolated(phase_milvus, n, folder, args.queries)
            save()
        print(size_report(n, data), flush=True)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    report["machine"]["load_average_end"] = list(os.getloadavg())
    save()
    print(render(report, args.update_size).split("### Targets")[-1], flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
