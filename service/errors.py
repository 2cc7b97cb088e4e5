"""The one place where errors become HTTP responses: JSON ``{"detail": ...}``, no traces.

Dify's External Knowledge API (``/retrieval``) speaks its own dialect: errors are
``{"error_code": ..., "error_msg": ...}`` with the codes Dify's documentation lists (1001 a
malformed or missing ``Authorization`` header, 1002 a refused key, 2001 an unknown
knowledge base; any other failure carries its HTTP status as its code), and a refused key
is answered 403, the status Dify's registration check reads as "wrong key" (it saves an
endpoint that answers 401).
"""

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
    MissingCredentialsError,
    ModelError,
    NotFoundError,
    PayloadTooLargeError,
    PolicyQAError,
    RateLimitedError,
    UnauthorizedError,
    UnsupportedMediaError,
)
from service.schemas import DifyErrorBody, ErrorBody

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


DIFY_PATH = "/retrieval"
DIFY_CODES: dict[type[PolicyQAError], int] = {
    MissingCredentialsError: 1001,
    UnauthorizedError: 1002,
    ForbiddenError: 1002,
    NotFoundError: 2001,
}
DIFY_STATUS: dict[type[PolicyQAError], int] = {UnauthorizedError: 403}


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
DIFY_MEANING: dict[int, str] = {
    403: "No bearer key or a malformed header (error_code 1001), a wrong key (1002), or no "
    "key is configured (1002).",
    404: "No such knowledge base (error_code 2001).",
}


def error_responses(*statuses: int, dify: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses an operation answers, all ``ErrorBody``
    (``DifyErrorBody`` for Dify's dialect)."""
    model, meaning = (DifyErrorBody, MEANING | DIFY_MEANING) if dify else (ErrorBody, MEANING)
    return {status: {"model": model, "description": meaning[status]} for status in statuses}


class BodyTooLargeError(StarletteHTTPException):
    """A body found over its limit while it streams in.

    An HTTPException, because FastAPI passes those through where it turns any other
    exception raised while reading a body into "400 There was an error parsing the body".
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


def is_dify(path: str) -> bool:
    return path == DIFY_PATH


def _lookup(table: dict[type[PolicyQAError], int], error: PolicyQAError) -> int | None:
    """The entry for the error's class or its nearest base class."""
    return next((table[cls] for cls in type(error).__mro__ if cls in table), None)


def status_for(error: PolicyQAError, *, path: str = "") -> int:
    dify = _lookup(DIFY_STATUS, error) if is_dify(path) else None
    return dify or _lookup(STATUS, error) or 500


def error_response(
    status: int,
    detail: object,
    headers: dict[str, str] | None = None,
    *,
    path: str = "",
    code: int | None = None,
) -> JSONResponse:
    """``{"detail": ...}``; on Dify's path ``{"error_code": code or status, "error_msg": ...}``."""
    if is_dify(path):
        body: dict[str, object] = {"error_code": code or status, "error_msg": _message(detail)}
    else:
        body = {"detail": detail}
    return JSONResponse(body, status_code=status, headers=headers)


def policy_error_response(error: PolicyQAError, *, path: str = "") -> JSONResponse:
    """The answer to a PolicyQAError; middleware that runs before routing uses it too."""
    status = status_for(error, path=path)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if isinstance(error, RateLimitedError):
        headers["Retry-After"] = str(error.retry_after)
    code = _lookup(DIFY_CODES, error)
    return error_response(status, str(error), headers, path=path, code=code)


def http_error_response(error: StarletteHTTPException, *, path: str = "") -> JSONResponse:
    return error_response(error.status_code, error.detail, dict(error.headers or {}), path=path)


def _message(detail: object) -> str:
    """One line for a message or for FastAPI's list of problems."""
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(part) for part in problem.get('loc', ()))}: {problem.get('msg', '')}"
            for problem in detail
            if isinstance(problem, dict)
        )
    return str(detail)


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure to a precise status; unexpected ones to a bare 500."""

    @app.exception_handler(PolicyQAError)
    async def _policy_error(request: Request, error: PolicyQAError) -> JSONResponse:
        return policy_error_response(error, path=request.url.path)

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
        return error_response(422, problems, path=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return http_error_response(error, path=request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return error_response(500, "internal error", path=request.url.path)
