"""Limits that protect the service: body size, time, rate, origin and keys."""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from index.errors import ForbiddenError, RateLimitedError, UnauthorizedError

ADMIN_PREFIX = "/v1/admin"


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


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
        limit = self.max_upload_bytes if path.startswith(ADMIN_PREFIX) else self.max_bytes
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_json(send, 413, f"request body exceeds {limit} bytes")
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLargeError:
            if not started:
                await _send_json(send, 413, f"request body exceeds {limit} bytes")


class _BodyTooLargeError(Exception):
    pass


class TimeoutMiddleware:
    """504 when a request takes longer than the configured limit (admin jobs excepted)."""

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, receive, tracking_send), self.seconds)
        except TimeoutError:
            if not started:
                await _send_json(send, 504, "request timed out")


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
