"""The Milvus collections of one corpus, and how passages and documents become rows.

``{name}`` holds one row per vector: each passage (slot 0) and each of its sentences
(slot j), keyed ``{chunk_id}/{slot}``. A passage row also holds its sparse lexical vector,
its text, section, offsets and its document's title; a sentence row only its vector.

``{name}_documents`` holds each document's metadata, normalised text (in parts: a Milvus
string holds 64 KiB) and how many of its passages contain each term, and one manifest row:
what the collection was built with, and a generation that every change renews.

Sparse vectors carry the project's own BM25: a term's dimension is a 32-bit hash of it (as
Milvus's own BM25 hashes tokens); a passage stores tf / (tf + k1 (1 - b + b len / mean))
per term, and a query sends count x idf, so their inner product is the local BM25 score.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from index.chunking import Chunk
from index.documents import Document, DocumentMeta
from index.lexical import passage_term_weights

MANIFEST_KEY = "@manifest"
# Dimension 0 is no term's: rows without terms (sentences, text parts, the manifest) carry
# it alone, because Milvus refuses an empty sparse vector, and no query ever asks for it.
NO_TERMS = {0: 1.0}
TEXT_PART_CHARS = 16_000  # 4 UTF-8 bytes at most per character: under Milvus's 65,535
MAX_KEY = 128
MAX_STRING = 65_535
SCHEMA_VERSION = 2


def documents_collection(name: str) -> str:
    return f"{name}_documents"


def term_dimension(term: str) -> int:
    """A term's sparse dimension: a stable 32-bit hash, never 0."""
    return int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "big") or 1


def vector_key(chunk_id: str, slot: int) -> str:
    return f"{chunk_id}/{slot}"


def create_collections(
    client: Any, name: str, *, dimension: int, dense_index: dict[str, Any]
) -> None:
    """Create both collections, indexed and loaded (any old ones must be dropped first)."""
    from pymilvus import DataType

    vectors = client.create_schema(auto_id=False, enable_dynamic_field=False)
    vectors.add_field("key", DataType.VARCHAR, is_primary=True, max_length=MAX_KEY)
    vectors.add_field("chunk_id", DataType.VARCHAR, max_length=MAX_KEY)
    vectors.add_field("doc_id", DataType.VARCHAR, max_length=MAX_KEY)
    vectors.add_field("ordinal", DataType.INT64)
    vectors.add_field("slot", DataType.INT64)
    vectors.add_field("dense", DataType.FLOAT_VECTOR, dim=dimension)
    vectors.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    vectors.add_field("text", DataType.VARCHAR, max_length=MAX_STRING)
    vectors.add_field("title", DataType.VARCHAR, max_length=1024)
    vectors.add_field("passage", DataType.JSON)  # ordinal, section path, start, end
    indexes = client.prepare_index_params()
    indexes.add_index("dense", **dense_index)
    indexes.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    client.create_collection(name, schema=vectors, index_params=indexes, consistency_level="Strong")

    documents = client.create_schema(auto_id=False, enable_dynamic_field=False)
    documents.add_field("key", DataType.VARCHAR, is_primary=True, max_length=MAX_KEY)
    documents.add_field("doc_id", DataType.VARCHAR, max_length=MAX_KEY)
    documents.add_field("part", DataType.INT64)
    documents.add_field("info", DataType.JSON)
    documents.add_field("text", DataType.VARCHAR, max_length=MAX_STRING)
    documents.add_field("terms", DataType.SPARSE_FLOAT_VECTOR)
    indexes = client.prepare_index_params()
    indexes.add_index("terms", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    client.create_collection(
        documents_collection(name),
        schema=documents,
        index_params=indexes,
        consistency_level="Strong",
    )


def vector_rows(
    chunks: dict[int, Chunk],
    vectors: Any,
    ids: Any,
    tokens: dict[int, list[str]],
    *,
    mean_length: float,
    titles: dict[str, str],
) -> Iterator[dict[str, Any]]:
    """One row per vector (``ids`` are row * VECTOR_SLOTS + slot, as ``embed_documents``
    numbers them)."""
    from index.snapshot import split_vector_id

    for vector, vector_id in zip(vectors, ids, strict=True):
        row, slot = split_vector_id(int(vector_id))
        chunk = chunks[row]
        record: dict[str, Any] = {
            "key": vector_key(chunk.chunk_id, slot),
            "chunk_id": chunk.chunk_id,
            "doc_id": chunk.doc_id,
            "ordinal": chunk.ordinal,
            "slot": slot,
            "dense": vector.tolist(),
            "sparse": NO_TERMS,
            "text": "",
            "title": "",
            "passage": {},
        }
        if slot == 0:
            weights = passage_term_weights(tokens[row], mean_length)
            record |= {
                "sparse": sparse_vector(weights) or NO_TERMS,
                "text": chunk.text,
                "title": titles[chunk.doc_id],
                "passage": {
                    "ordinal": chunk.ordinal,
                    "section": list(chunk.section),
                    "start": chunk.start,
                    "end": chunk.end,
                },
            }
        yield record


def sparse_vector(weights: dict[str, float]) -> dict[int, float]:
    """Terms' weights by dimension (terms sharing a hash add up)."""
    vector: dict[int, float] = {}
    for term, weight in weights.items():
        if weight > 0:
            dimension = term_dimension(term)
            vector[dimension] = vector.get(dimension, 0.0) + weight
    return vector


def chunk_from_row(row: dict[str, Any]) -> Chunk:
    passage = row["passage"]
    return Chunk(
        chunk_id=row["chunk_id"],
        doc_id=row["doc_id"],
        ordinal=int(passage["ordinal"]),
        section=tuple(passage["section"]),
        start=int(passage["start"]),
        end=int(passage["end"]),
        text=row["text"],
    )


PASSAGE_FIELDS = ["chunk_id", "doc_id", "text", "passage"]


def document_rows(
    document: Document, *, fingerprint: str, chunks: list[Chunk], tokens: list[list[str]]
) -> list[dict[str, Any]]:
    """A document's rows: part 0 holds its metadata and term counts, every part a slice
    of its text."""
    passages_with: dict[str, int] = {}
    for terms in tokens:
        for term in set(terms):
            passages_with[term] = passages_with.get(term, 0) + 1
    text = document.text
    parts = [text[i : i + TEXT_PART_CHARS] for i in range(0, len(text), TEXT_PART_CHARS)] or [""]
    info = {
        "meta": document.meta.to_dict(),
        "fingerprint": fingerprint,
        "passages": len(chunks),
        "length": len(text),
        "parts": len(parts),
    }
    return [
        {
            "key": f"{document.id}/{part}",
            "doc_id": document.id,
            "part": part,
            "info": info if part == 0 else {},
            "text": piece,
            "terms": (sparse_vector({t: float(n) for t, n in passages_with.items()}) or NO_TERMS)
            if part == 0
            else NO_TERMS,
        }
        for part, piece in enumerate(parts)
    ]


def meta_from_info(info: dict[str, Any]) -> DocumentMeta:
    return DocumentMeta(**info["meta"])


def manifest_row(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": MANIFEST_KEY,
        "doc_id": "",
        "part": -1,
        "info": {**fields, "schema_version": SCHEMA_VERSION},
        "text": "",
        "terms": NO_TERMS,
    }
