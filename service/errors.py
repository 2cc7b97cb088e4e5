"""The one place where errors become HTTP responses: JSON ``{"detail": ...}``, no traces."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from index.errors import (
    ConflictError,
    CorpusError,
    ForbiddenError,
    IndexIntegrityError,
    IndexNotReadyError,
    InvalidInputError,
    ModelError,
    NotFoundError,
    PayloadTooLargeError,
    PolicyQAError,
    RateLimitedError,
    UnauthorizedError,
    UnsupportedMediaError,
)

log = logging.getLogger("service.errors")

STATUS: dict[type[PolicyQAError], int] = {
    InvalidInputError: 422,
    CorpusError: 422,
    NotFoundError: 404,
    ConflictError: 409,
    PayloadTooLargeError: 413,
    UnsupportedMediaError: 415,
    UnauthorizedError: 401,
    ForbiddenError: 403,
    RateLimitedError: 429,
    IndexNotReadyError: 503,
    IndexIntegrityError: 503,
    ModelError: 503,
}


def status_for(error: PolicyQAError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(
    status: int, detail: object, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure to a precise status; unexpected ones to a bare 500."""

    @app.exception_handler(PolicyQAError)
    async def _policy_error(request: Request, error: PolicyQAError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, UnauthorizedError) else {}
        if isinstance(error, RateLimitedError):
            headers["Retry-After"] = str(error.retry_after)
        return error_response(status_for(error), str(error), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "loc": list(e.get("loc", ())),
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in error.errors()
        ]
        return error_response(422, problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(error.status_code, error.detail, dict(error.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return error_response(500, "internal error")
