"""Limits that protect the service: body size, time, rate, origin and keys."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import math
import time
from collections import deque
from collections.abc import Callable, Iterator

from starlette.datastructures import URL, Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from index.errors import (
    ForbiddenError,
    MissingCredentialsError,
    PolicyQAError,
    RateLimitedError,
    UnauthorizedError,
)
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
            await http_error_response(BodyTooLargeError(limit), path=path)(scope, receive, send)
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
                await http_error_response(error, path=path)(scope, receive, send)


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
                path = scope.get("path", "")
                await error_response(504, "request timed out", path=path)(scope, receive, send)


class RateLimiter:
    """Moving-window limits per client address and per widget site key.

    A log of hit times per key. Every check runs on the event loop, so it needs no lock
    and no background thread; keys with no hit inside the window are swept once a window.
    """

    WINDOW_S = 60.0

    def __init__(
        self, *, per_client: int, per_site: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._per_client = per_client
        self._per_site = per_site
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._next_sweep = clock() + self.WINDOW_S

    def check(self, *, client: str, site_key: str | None) -> None:
        """Count one hit against every budget the request falls under.

        Raises:
            RateLimitedError: a budget is spent (with Retry-After); a refused request
                spends nothing.
        """
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        budgets = [(f"client:{client}", self._per_client)]
        if site_key:
            budgets.append((f"site:{site_key}", self._per_site))
        logs = [self._recent(key, now) for key, _ in budgets]
        for log, (_, budget) in zip(logs, budgets, strict=True):
            if len(log) >= budget:
                retry = max(1, math.ceil(log[0] + self.WINDOW_S - now))
                raise RateLimitedError("rate limit exceeded; slow down", retry_after=retry)
        for log in logs:
            log.append(now)

    def _recent(self, key: str, now: float) -> deque[float]:
        """The key's hits inside the window, oldest first."""
        log = self._hits.setdefault(key, deque())
        while log and log[0] <= now - self.WINDOW_S:
            log.popleft()
        return log

    @property
    def tracked(self) -> list[str]:
        """The keys whose recent hits are remembered."""
        return list(self._hits)

    def _sweep(self, now: float) -> None:
        """Forget keys with no hit inside the window (one per address ever seen)."""
        cutoff = now - self.WINDOW_S
        self._hits = {key: log for key, log in self._hits.items() if log and log[-1] > cutoff}
        self._next_sweep = now + self.WINDOW_S


class InFlightLimit:
    """At most ``limit`` requests at once; one more is refused at once with 429.

    Counted on the event loop only (entered and left there), so it needs no lock.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the slots for a request.

        Raises:
            RateLimitedError: every slot is taken (Retry-After: 1).
        """
        if self.in_flight >= self.limit:
            raise RateLimitedError("too many requests at once; retry shortly", retry_after=1)
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


def admin_keys(settings: Settings) -> list[str]:
    return [settings.admin_key.get_secret_value()] if settings.admin_key else []


def retrieval_keys(settings: Settings) -> list[str]:
    """The keys that open ``/retrieval`` and ``/mcp``: the retrieval keys and the admin key."""
    return [key.get_secret_value() for key in settings.retrieval_keys] + admin_keys(settings)


def own_origin(url: URL) -> str:
    """The origin a request was sent to (a browser on the service's own pages sends it)."""
    return f"{url.scheme}://{url.netloc}"


def require_bearer(authorization: str | None, keys: list[str], *, what: str) -> None:
    """Constant-time check of ``Authorization: Bearer <key>`` against the allowed keys.

    Raises:
        ForbiddenError: no key is configured, so the feature is off.
        MissingCredentialsError: no bearer key.
        UnauthorizedError: a wrong key.
    """
    if not keys:
        raise ForbiddenError(f"{what} is disabled: no key is configured")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise MissingCredentialsError("missing bearer token")
    supplied = token.strip().encode()
    # Compare against every key so timing does not reveal which one nearly matched.
    matched = [hmac.compare_digest(supplied, key.encode()) for key in keys]
    if not any(matched):
        raise UnauthorizedError("invalid bearer token")


def check_caller(
    request: Request, settings: Settings, limiter: RateLimiter, *, site_key: str | None = None
) -> None:
    """What every public caller passes: an allowed origin, then the rate limits.

    Raises:
        ForbiddenError: a browser on a page that is not allowed.
        RateLimitedError: the client (or its site key) is over its budget.
    """
    check_origin(
        request.headers.get("origin"),
        own_origin=own_origin(request.url),
        allowed=settings.cors_origins,
    )
    client = request.client.host if request.client else "unknown"
    limiter.check(client=client, site_key=site_key)


def check_origin(origin: str | None, *, own_origin: str, allowed: list[str]) -> None:
    """Browsers send Origin; refuse cross-site callers not on the allow-list.

    CORS headers alone only stop a browser from reading the response; this refuses to
    do the work (and spend the site's rate budget) for pages that are not allowed.
    """
    if origin is None or origin == own_origin or origin in allowed or "*" in allowed:
        return
    raise ForbiddenError(f"origin {origin} is not allowed")
