"""Build a snapshot from documents, or derive one by adding or removing a document.

Only the changed document is chunked and embedded on an incremental change; the other
passages keep their vectors and row ids, and an added document's passages go to the BM25
and dense delta segments until they grow past ``DELTA_MAX_FRACTION`` of the corpus. The
main segments are then untouched: an add copies and saves only what it adds, and so does
removing a document that is still in the deltas. Removing any other document rebuilds.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from tqdm import tqdm

from index.chunking import Chunk, chunk_document
from index.dense import DenseIndex, choose_index_type
from index.documents import Document
from index.embedding import Embedder
from index.errors import IndexIntegrityError, NotFoundError
from index.lexical import LexicalIndex, Tokenizer
from index.settings import Settings
from index.snapshot import (
    Manifest,
    Snapshot,
    corpus_fingerprint,
    document_fingerprint,
    vector_ids,
)
from index.store import REBUILD_HINT

# The BM25 delta is folded into a full rebuild when it outgrows this share of the main
# segment (or ``DELTA_MIN_PASSAGES``, whichever is larger): a big delta slows queries.
DELTA_MAX_FRACTION = 0.05
DELTA_MIN_PASSAGES = 2_000


def chunking_params(settings: Settings) -> dict[str, int]:
    return {
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "min_chunk_chars": settings.min_chunk_chars,
    }


def _chunks(document: Document, params: dict[str, int]) -> list[Chunk]:
    return chunk_document(
        document,
        chunk_size=params["chunk_size"],
        chunk_overlap=params["chunk_overlap"],
        min_chars=params["min_chunk_chars"],
    )


@dataclass(frozen=True)
class Embedded:
    """Documents cut into passages, embedded and tokenised: what either store indexes."""

    chunks: dict[int, Chunk]
    """Passages by row id (consecutive from the first row given)."""
    vectors: np.ndarray
    ids: np.ndarray
    """Each vector's id: row * VECTOR_SLOTS + slot (0 the passage, j its sentence j-1)."""
    tokens: dict[int, list[str]]
    """Each passage's BM25 terms (of its text with its section path)."""


def embed_documents(
    documents: list[Document],
    *,
    embedder: Embedder,
    tokenizer: Tokenizer,
    chunking: dict[str, int],
    first_row: int = 0,
    show_progress: bool = False,
) -> Embedded:
    """Chunk, embed and tokenise documents; rows are numbered from ``first_row``."""
    chunks = [
        chunk
        for document in tqdm(documents, desc="chunking", unit="doc", disable=not show_progress)
        for chunk in _chunks(document, chunking)
    ]
    rows = {first_row + i: chunk for i, chunk in enumerate(chunks)}
    vectors, ids = _embed(rows, embedder, show_progress=show_progress)
    tokens = {row: tokenizer.tokenize(chunk.context_text) for row, chunk in rows.items()}
    return Embedded(chunks=rows, vectors=vectors, ids=ids, tokens=tokens)


def build_snapshot(
    documents: list[Document],
    *,
    embedder: Embedder,
    tokenizer: Tokenizer,
    settings: Settings,
    show_progress: bool = False,
) -> Snapshot:
    """Chunk, embed and index every document from scratch."""
    params = chunking_params(settings)
    embedded = embed_documents(
        documents,
        embedder=embedder,
        tokenizer=tokenizer,
        chunking=params,
        show_progress=show_progress,
    )
    index_type = choose_index_type(len(embedded.ids), settings.index_type)
    dense = DenseIndex.create(embedder.dimension, index_type, training=embedded.vectors)
    dense.add(embedded.vectors, embedded.ids)
    return _assemble(
        documents={d.id: d for d in documents},
        chunks=embedded.chunks,
        tokens=embedded.tokens,
        lexical=_full_lexical(embedded.tokens),
        dense=dense,
        next_row_id=len(embedded.chunks),
        model_id=embedder.model_id,
        chunking=params,
        main_segment=new_main_segment(),
    )


def with_document(
    snapshot: Snapshot,
    document: Document,
    *,
    embedder: Embedder,
    tokenizer: Tokenizer,
) -> Snapshot:
    """A new snapshot with ``document`` added (or replaced if its id exists).

    The document is chunked with the snapshot's own chunking parameters, so every
    passage in one index was cut the same way.
    """
    base = (
        without_document(snapshot, document.id) if document.id in snapshot.documents else snapshot
    )
    start = base.manifest.next_row_id
    new = embed_documents(
        [document],
        embedder=embedder,
        tokenizer=tokenizer,
        chunking=base.manifest.chunking,
        first_row=start,
    )
    new_rows, vectors, ids, new_tokens = new.chunks, new.vectors, new.ids, new.tokens
    tokens = {**base.tokens, **new_tokens}
    if _delta_full(base, len(new_rows)):  # fold every delta into new main segments
        dense = base.dense.compacted()
        dense.add(vectors, ids)
        lexical, main_segment = _full_lexical(tokens), new_main_segment()
    else:  # the main segments (and their files) stay as they are
        dense = base.dense.extended(vectors, ids)
        lexical, main_segment = _extended_lexical(base, new_tokens), base.manifest.main_segment
    return _assemble(
        documents={**base.documents, document.id: document},
        chunks={**base.chunks, **new_rows},
        tokens=tokens,
        lexical=lexical,
        dense=dense,
        next_row_id=start + len(new_rows),
        model_id=base.manifest.model_id,
        chunking=base.manifest.chunking,
        main_segment=main_segment,
    )


def without_document(snapshot: Snapshot, doc_id: str) -> Snapshot:
    """A new snapshot with every trace of ``doc_id`` removed.

    Raises:
        NotFoundError: the document is not in the index.
    """
    if doc_id not in snapshot.documents:
        raise NotFoundError(f"document {doc_id!r} is not in the index")
    doomed = snapshot.rows_for_documents({doc_id})
    doomed_vectors = snapshot.vector_ids_for_rows(doomed)
    gone = set(doomed.tolist())
    tokens = {r: t for r, t in snapshot.tokens.items() if r not in gone}
    lexical: tuple[LexicalIndex, np.ndarray]
    if len(doomed) and np.isin(doomed, snapshot.delta_rows).all():
        # Added since the main segment was made: only the deltas change (e.g. an upload
        # replaced or withdrawn soon after), and the main segment's files are reused.
        kept = snapshot.delta_rows[~np.isin(snapshot.delta_rows, doomed)]
        main_rows = snapshot.lexical_rows[: snapshot.lexical.main_size]
        lexical = (
            snapshot.lexical.with_delta([tokens[int(row)] for row in kept]),
            np.concatenate([main_rows, kept]),
        )
        dense = snapshot.dense.without_added(doomed_vectors)
        main_segment = snapshot.manifest.main_segment
    else:  # a main-segment document: new main segments without it (a full rebuild)
        dense = snapshot.dense.compacted()
        dense.remove(doomed_vectors)
        lexical, main_segment = _full_lexical(tokens), new_main_segment()
    return _assemble(
        documents={k: v for k, v in snapshot.documents.items() if k != doc_id},
        chunks={r: c for r, c in snapshot.chunks.items() if r not in gone},
        tokens=tokens,
        lexical=lexical,
        dense=dense,
        next_row_id=snapshot.manifest.next_row_id,
        model_id=snapshot.manifest.model_id,
        chunking=snapshot.manifest.chunking,
        main_segment=main_segment,
    )


def _embed(
    rows: dict[int, Chunk], embedder: Embedder, *, show_progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Vectors and ids for passages and their sentences; each distinct text embedded once."""
    texts: list[str] = []
    ids: list[np.ndarray] = []
    for row, chunk in rows.items():
        chunk_texts = chunk.embedding_texts()
        texts.extend(chunk_texts)
        ids.append(vector_ids(row, len(chunk_texts)))
    distinct = list(dict.fromkeys(texts))
    position = {text: i for i, text in enumerate(distinct)}
    vectors = embedder.embed_passages(distinct, show_progress=show_progress)
    all_ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
    return vectors[[position[text] for text in texts]], all_ids


def new_main_segment() -> str:
    """A fresh main-segment id: whatever was built now shares no files with older versions."""
    return uuid.uuid4().hex


def _delta_full(base: Snapshot, adding: int) -> bool:
    """Whether adding ``adding`` passages should fold the deltas into new main segments:
    a big delta slows queries and is rewritten on every save."""
    main = base.lexical.main_size
    limit = max(DELTA_MIN_PASSAGES, DELTA_MAX_FRACTION * main)
    return not main or base.lexical.delta_size + adding > limit


def _extended_lexical(
    base: Snapshot, new_tokens: dict[int, list[str]]
) -> tuple[LexicalIndex, np.ndarray]:
    """The new passages appended to the BM25 delta."""
    # New row ids are above every existing one: appending keeps positions in row order.
    new_rows = sorted(new_tokens)
    rows = np.concatenate([base.lexical_rows, np.array(new_rows, dtype=np.int64)])
    return base.lexical.extended([new_tokens[row] for row in new_rows]), rows


def _full_lexical(tokens: dict[int, list[str]]) -> tuple[LexicalIndex, np.ndarray]:
    """A BM25 index over every passage, and the row id at each of its positions."""
    rows = np.array(sorted(tokens), dtype=np.int64)
    return LexicalIndex([tokens[int(row)] for row in rows]), rows


def _assemble(
    *,
    documents: dict[str, Document],
    chunks: dict[int, Chunk],
    tokens: dict[int, list[str]],
    lexical: tuple[LexicalIndex, np.ndarray],
    dense: DenseIndex,
    next_row_id: int,
    model_id: str,
    chunking: dict[str, int],
    main_segment: str,
) -> Snapshot:
    """Put the parts and a fresh manifest together."""
    fingerprints = {doc_id: document_fingerprint(doc) for doc_id, doc in documents.items()}
    manifest = Manifest(
        model_id=model_id,
        dimension=dense.dimension,
        corpus_hash=corpus_fingerprint(fingerprints),
        chunking=chunking,
        index_type=dense.index_type,
        passages=len(chunks),
        documents=fingerprints,
        next_row_id=next_row_id,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        main_segment=main_segment,
    )
    return Snapshot(
        manifest=manifest,
        documents=documents,
        chunks=chunks,
        tokens=tokens,
        dense=dense,
        lexical=lexical[0],
        lexical_rows=lexical[1],
    )


def check_compatible(manifest: Manifest, *, embedder: Embedder) -> None:
    """Refuse an index built with another model: its vectors would be silent garbage.

    Raises:
        IndexIntegrityError: model id or dimension differ.
    """
    if manifest.model_id != embedder.model_id or manifest.dimension != embedder.dimension:
        raise IndexIntegrityError(
            f"index was built with {manifest.model_id} ({manifest.dimension}-d) but the "
            f"configured model is {embedder.model_id} ({embedder.dimension}-d); {REBUILD_HINT}"
        )


def is_up_to_date(
    manifest: Manifest | None, documents: list[Document], *, model_id: str, settings: Settings
) -> bool:
    """Whether the stored index already reflects this corpus, model and chunking."""
    if manifest is None:
        return False
    fingerprints = {d.id: document_fingerprint(d) for d in documents}
    return (
        manifest.corpus_hash == corpus_fingerprint(fingerprints)
        and manifest.model_id == model_id
        and manifest.chunking == chunking_params(settings)
    )
