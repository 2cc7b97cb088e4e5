"""Security headers on every response; a CSP on HTML pages."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# FastAPI's Swagger UI and ReDoc pages load their code and styles from these hosts.
DOCS_SCRIPTS = "https://cdn.jsdelivr.net"
DOCS_STYLES = "https://cdn.jsdelivr.net https://fonts.googleapis.com"
DOCS_FONTS = "https://fonts.gstatic.com"
DOCS_IMAGES = "https://fastapi.tiangolo.com"  # the favicon
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def script_hashes(html: bytes) -> list[str]:
    """CSP sources for the page's inline scripts, so exactly those may run."""
    return [
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    ]


class SecurityHeadersMiddleware:
    """nosniff and no-referrer everywhere; pages get a CSP whose frame-ancestors are the
    sites allowed to embed them.

    The API docs pages (``docs_paths``) get their own CSP: FastAPI's pages load Swagger
    UI / ReDoc from a CDN and start it with an inline script, which the strict one blocks.
    Their inline scripts are allowed by hash (computed from the page as it is sent), never
    by ``'unsafe-inline'``; every other page keeps the strict CSP.
    """

    def __init__(
        self, app: ASGIApp, *, frame_ancestors: list[str], docs_paths: Iterable[str | None] = ()
    ) -> None:
        self.app = app
        self.docs_paths = frozenset(path for path in docs_paths if path)
        ancestors = " ".join(["'self'", *frame_ancestors])
        common = (
            f"connect-src 'self'; frame-ancestors {ancestors}; base-uri 'none'; form-action 'self'"
        )
        self.page_csp = (
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            f"img-src 'self' data:; {common}"
        ).encode()
        self.docs_csp_rest = (
            f"style-src 'self' 'unsafe-inline' {DOCS_STYLES}; font-src 'self' {DOCS_FONTS}; "
            f"img-src 'self' data: {DOCS_IMAGES}; worker-src 'self' blob:; {common}"
        )

    def docs_csp(self, html: bytes) -> bytes:
        scripts = " ".join(["'self'", DOCS_SCRIPTS, *script_hashes(html)])
        return f"default-src 'self'; script-src {scripts}; {self.docs_csp_rest}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope.get("path", "") in self.docs_paths
        held: Message | None = None  # a docs page's start, until its body is known
        body = b""

        async def send_with_headers(message: Message) -> None:
            nonlocal held, body
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                content_type = dict(headers).get(b"content-type", b"")
                if content_type.startswith(b"text/html"):
                    headers.append((b"x-frame-options", b"SAMEORIGIN"))
                    if docs:
                        held = message
                        return
                    headers.append((b"content-security-policy", self.page_csp))
            elif message["type"] == "http.response.body" and held is not None:
                body += message.get("body", b"")
                if message.get("more_body", False):
                    return
                held["headers"].append((b"content-security-policy", self.docs_csp(body)))
                await send(held)
                held = None
                message = {**message, "body": body}
            await send(message)

        await self.app(scope, receive, send_with_headers)
