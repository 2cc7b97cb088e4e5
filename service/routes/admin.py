"""Admin API (bearer key): add and delete documents, rebuild, status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool

from index.documents import SUPPORTED_SUFFIXES, DocumentMeta
from index.errors import InvalidInputError, PayloadTooLargeError, UnsupportedMediaError
from service.deps import AdminGuard, SettingsDep, StateDep
from service.errors import error_responses
from service.routes.documents import DOC_ID, summary
from service.schemas import CLEAN_TEXT, DocumentSummary, IndexStatus, clean_text
from service.state import NewDocument, source_suffix

router = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    dependencies=[AdminGuard],
    responses=error_responses(401, 403, 422, 503),
)


def _clean(value: str, field: str) -> str:
    try:
        return clean_text(value, field=field)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from exc


def _status(state: StateDep) -> IndexStatus:
    snapshot = state.snapshot
    return IndexStatus(
        version=state.version,
        documents=len(snapshot.documents),
        passages=snapshot.manifest.passages,
        model=snapshot.manifest.model_id,
        index_type=snapshot.manifest.index_type,
    )


@router.get("/status", response_model=IndexStatus)
async def status(state: StateDep) -> IndexStatus:
    """What the live index holds."""
    return _status(state)


@router.post(
    "/documents",
    response_model=DocumentSummary,
    status_code=201,
    responses=error_responses(400, 409, 413, 415),
)
async def add_document(
    state: StateDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description=".txt, .md, .pdf or .docx")],
    doc_id: Annotated[str, Form(alias="id", pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")],
    title_zh: Annotated[str, Form(min_length=1, max_length=300, json_schema_extra=CLEAN_TEXT)],
    title_en: Annotated[str, Form(min_length=1, max_length=300, json_schema_extra=CLEAN_TEXT)],
    issuer: Annotated[str, Form(max_length=300)] = "",
    date: Annotated[str | None, Form(pattern=r"^\d{4}(-\d{2}(-\d{2})?)?$")] = None,
    number: Annotated[str | None, Form(max_length=100)] = None,
    language: Annotated[str, Form(pattern=r"^(zh|en)$")] = "zh",
) -> DocumentSummary:
    """Upload a document; it is searchable when this returns (no full rebuild)."""
    suffix = source_suffix(file.filename or "")
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnsupportedMediaError(
            f"unsupported file type {suffix or '(none)'}; use {', '.join(SUPPORTED_SUFFIXES)}"
        )
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLargeError(f"upload exceeds {settings.max_upload_bytes} bytes")
    meta = DocumentMeta(
        id=doc_id,
        title_zh=_clean(title_zh, "title_zh"),
        title_en=_clean(title_en, "title_en"),
        source="",
        issuer=issuer.strip(),
        date=date,
        number=number,
        language=language,
    )
    snapshot = await run_in_threadpool(
        state.add_document, NewDocument(meta=meta, data=data, suffix=suffix)
    )
    return summary(snapshot, doc_id)


@router.delete("/documents/{doc_id}", response_model=IndexStatus, responses=error_responses(404))
async def delete_document(state: StateDep, doc_id: str = DOC_ID) -> IndexStatus:
    """Remove a document from the index and the catalog."""
    await run_in_threadpool(state.remove_document, doc_id)
    return _status(state)


@router.post("/rebuild", response_model=IndexStatus)
async def rebuild(state: StateDep) -> IndexStatus:
    """Rebuild from the corpus folder; requests are answered from the old index meanwhile."""
    await run_in_threadpool(state.rebuild)
    return _status(state)
