"""Limits that protect the service: body size, time, rate, origin and keys."""

from __future__ import annotations

import asyncio
import hmac
import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from index.errors import ForbiddenError, PolicyQAError, RateLimitedError, UnauthorizedError
from index.settings import Settings
from service.errors import (
    BodyTooLargeError,
    error_response,
    http_error_response,
    policy_error_response,
)

ADMIN_PREFIX = "/v1/admin"


def is_admin_path(path: str) -> bool:
    return path == ADMIN_PREFIX or path.startswith(f"{ADMIN_PREFIX}/")


class BodyLimitMiddleware:
    """413 for bodies over the limit, counted as they stream (Content-Length can lie).

    Admin uploads get their own, larger limit.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        limit = self.max_upload_bytes if is_admin_path(path) else self.max_bytes
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await http_error_response(BodyTooLargeError(limit))(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI answers it with a 413 where a body is read (see BodyTooLargeError).
                    raise BodyTooLargeError(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError as error:  # read outside FastAPI's body parsing
            if not started:
                await http_error_response(error)(scope, receive, send)


class AdminKeyFirstMiddleware:
    """401/403 for admin requests without the right key, before their body is read.

    FastAPI reads and parses a form body before any dependency runs, so the route guard
    alone would let anyone make the server spool and parse 20 MB uploads. The route guard
    stays; this only answers earlier, with the same error.
    """

    def __init__(self, app: ASGIApp, *, keys: list[str]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_admin_path(scope.get("path", "")):
            try:
                require_bearer(
                    Headers(scope=scope).get("authorization"), self.keys, what="the admin API"
                )
            except PolicyQAError as error:
                await policy_error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class TimeoutMiddleware:
    """504 when a request takes longer than the configured limit (admin jobs excepted)."""

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_admin_path(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            # A deadline on this task, not a new task per request as ``wait_for`` makes.
            async with asyncio.timeout(self.seconds):
                await self.app(scope, receive, tracking_send)
        except TimeoutError:
            if not started:
                await error_response(504, "request timed out")(scope, receive, send)


class RateLimiter:
    """Moving-window limits per client address and per widget site key."""

    def __init__(self, *, per_client: int, per_site: int) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._client = RateLimitItemPerMinute(per_client)
        self._site = RateLimitItemPerMinute(per_site)

    def check(self, *, client: str, site_key: str | None) -> None:
        """Raises RateLimitedError with a Retry-After when a budget is spent."""
        checks = [(self._client, f"client:{client}")]
        if site_key:
            checks.append((self._site, f"site:{site_key}"))
        for item, key in checks:
            if not self._limiter.hit(item, key):
                reset = self._limiter.get_window_stats(item, key).reset_time
                retry = max(1, math.ceil(reset - time.time()))
                raise RateLimitedError("rate limit exceeded; slow down", retry_after=retry)


def admin_keys(settings: Settings) -> list[str]:
    return [settings.admin_key.get_secret_value()] if settings.admin_key else []


def require_bearer(authorization: str | None, keys: list[str], *, what: str) -> None:
    """Constant-time check of ``Authorization: Bearer <key>`` against the allowed keys.

    Raises:
        ForbiddenError: no key is configured, so the feature is off.
        UnauthorizedError: missing or wrong key.
    """
    if not keys:
        raise ForbiddenError(f"{what} is disabled: no key is configured")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise UnauthorizedError("missing bearer token")
    supplied = token.strip().encode()
    # Compare against every key so timing does not reveal which one nearly matched.
    matched = [hmac.compare_digest(supplied, key.encode()) for key in keys]
    if not any(matched):
        raise UnauthorizedError("invalid bearer token")


def check_origin(origin: str | None, *, own_origin: str, allowed: list[str]) -> None:
    """Browsers send Origin; refuse cross-site callers not on the allow-list.

    CORS headers alone only stop a browser from reading the response; this refuses to
    do the work (and spend the site's rate budget) for pages that are not allowed.
    """
    if origin is None or origin == own_origin or origin in allowed or "*" in allowed:
        return
    raise ForbiddenError(f"origin {origin} is not allowed")
