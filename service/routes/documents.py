"""Read access to the catalog, documents (with the text offsets refer to) and passages."""

from __future__ import annotations

from fastapi import APIRouter, Path

from index import chunking
from index.chunking import Chunk
from index.errors import NotFoundError
from index.searchable import Searchable
from service.deps import PublicGuard, StateDep
from service.errors import error_responses
from service.schemas import ChunkDetail, ChunkList, DocumentDetail, DocumentList, DocumentSummary

router = APIRouter(
    tags=["documents"],
    dependencies=[PublicGuard],
    responses=error_responses(403, 422, 429, 503, 504),
)
NOT_FOUND = error_responses(404)
DOC_ID = Path(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", description="Document id.")
ORDINAL = Path(ge=0, le=999_999, description="The passage's position in its document.")
CHUNK_ID = Path(pattern=r"^[a-z0-9][a-z0-9-]{0,63}:\d{1,6}$", description="doc_id:ordinal")


def summary(snapshot: Searchable, doc_id: str) -> DocumentSummary:
    meta = snapshot.catalog[doc_id]
    passages, characters = snapshot.document_size(doc_id)
    return DocumentSummary(
        id=meta.id,
        title_zh=meta.title_zh,
        title_en=meta.title_en,
        issuer=meta.issuer,
        date=meta.date,
        number=meta.number,
        language=meta.language,
        characters=characters,
        passages=passages,
    )


@router.get("/v1/documents", response_model=DocumentList)
async def list_documents(state: StateDep) -> DocumentList:
    """The catalog of indexed documents."""
    return catalog(state.snapshot)


def catalog(snapshot: Searchable) -> DocumentList:
    return DocumentList(documents=[summary(snapshot, doc_id) for doc_id in snapshot.catalog])


@router.get("/v1/documents/{doc_id}", response_model=DocumentDetail, responses=NOT_FOUND)
async def get_document(state: StateDep, doc_id: str = DOC_ID) -> DocumentDetail:
    """Metadata and normalised text: ``text[start:end]`` of any passage is its quote."""
    return document_detail(state.snapshot, doc_id)


def document_detail(snapshot: Searchable, doc_id: str) -> DocumentDetail:
    """A document's catalog entry, counts and text.

    Raises:
        NotFoundError: no such document.
    """
    if doc_id not in snapshot.catalog:
        raise NotFoundError(f"document {doc_id!r} not found")
    return DocumentDetail(
        **summary(snapshot, doc_id).model_dump(), text=snapshot.documents[doc_id].text
    )


@router.get("/v1/documents/{doc_id}/chunks", response_model=ChunkList, responses=NOT_FOUND)
async def list_chunks(state: StateDep, doc_id: str = DOC_ID) -> ChunkList:
    """Every passage of a document, in order (what the index cites)."""
    snapshot = state.snapshot
    if doc_id not in snapshot.catalog:
        raise NotFoundError(f"document {doc_id!r} not found")
    return ChunkList(chunks=[_detail(c) for c in snapshot.chunks_of(doc_id)])


@router.get(
    "/v1/documents/{doc_id}/chunks/{ordinal}", response_model=ChunkDetail, responses=NOT_FOUND
)
async def get_document_chunk(
    state: StateDep, doc_id: str = DOC_ID, ordinal: int = ORDINAL
) -> ChunkDetail:
    """One passage of a document by its position (the link a citation carries)."""
    chunk = state.snapshot.chunk_by_id(chunking.chunk_id(doc_id, ordinal))
    if chunk is None:
        raise NotFoundError(f"passage {ordinal} of document {doc_id!r} not found")
    return _detail(chunk)


@router.get("/v1/chunks/{chunk_id}", response_model=ChunkDetail, responses=NOT_FOUND)
async def get_chunk(state: StateDep, chunk_id: str = CHUNK_ID) -> ChunkDetail:
    """One passage by id."""
    chunk = state.snapshot.chunk_by_id(chunk_id)
    if chunk is None:
        raise NotFoundError(f"passage {chunk_id!r} not found")
    return _detail(chunk)


def _detail(chunk: Chunk) -> ChunkDetail:
    return ChunkDetail(
        chunk_id=chunk.chunk_id,
        doc_id=chunk.doc_id,
        ordinal=chunk.ordinal,
        section=chunk.section_label,
        start=chunk.start,
        end=chunk.end,
        text=chunk.text,
    )
