"""The one place where errors become HTTP responses: JSON ``{"detail": ...}``, no traces."""

from __future__ import annotations

import logging
from typing import Any

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
from service.schemas import ErrorBody

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


# What each status means here, for the schema (every operation lists those it can answer).
MEANING: dict[int, str] = {
    400: "The body could not be parsed (e.g. not UTF-8).",
    401: "Missing or wrong bearer key.",
    403: "Origin not allowed, or the API is disabled (no key configured).",
    404: "No such document, passage or knowledge base.",
    409: "Clashes with the current state.",
    413: "Body, upload or document text over its limit.",
    415: "Unsupported file type.",
    422: "Invalid input: a list of problems, or one message.",
    429: "Rate limit spent; see Retry-After.",
    503: "The index is loading, unusable, cannot be written, or its store is unreachable.",
    504: "The request took longer than the configured limit.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses an operation answers, all ``ErrorBody``."""
    return {status: {"model": ErrorBody, "description": MEANING[status]} for status in statuses}


class BodyTooLargeError(StarletteHTTPException):
    """A body found over its limit while it streams in.

    An HTTPException, because FastAPI passes those through where it turns any other
    exception raised while reading a body into "400 There was an error parsing the body".
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


def status_for(error: PolicyQAError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(
    status: int, detail: object, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def policy_error_response(error: PolicyQAError) -> JSONResponse:
    """The answer to a PolicyQAError; middleware that runs before routing uses it too."""
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, UnauthorizedError) else {}
    if isinstance(error, RateLimitedError):
        headers["Retry-After"] = str(error.retry_after)
    return error_response(status_for(error), str(error), headers)


def http_error_response(error: StarletteHTTPException) -> JSONResponse:
    return error_response(error.status_code, error.detail, dict(error.headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure to a precise status; unexpected ones to a bare 500."""

    @app.exception_handler(PolicyQAError)
    async def _policy_error(request: Request, error: PolicyQAError) -> JSONResponse:
        return policy_error_response(error)

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
        return http_error_response(error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return error_response(500, "internal error")
