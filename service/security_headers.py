"""Security headers on every response; a CSP on HTML pages."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class SecurityHeadersMiddleware:
    """nosniff and no-referrer everywhere; pages get a CSP whose frame-ancestors are the
    sites allowed to embed them."""

    def __init__(self, app: ASGIApp, *, frame_ancestors: list[str]) -> None:
        self.app = app
        ancestors = " ".join(["'self'", *frame_ancestors])
        self.page_csp = (
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            f"img-src 'self' data:; connect-src 'self'; frame-ancestors {ancestors}; "
            "base-uri 'none'; form-action 'self'"
        ).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                content_type = dict(headers).get(b"content-type", b"")
                if content_type.startswith(b"text/html"):
                    headers.append((b"content-security-policy", self.page_csp))
                    headers.append((b"x-frame-options", b"SAMEORIGIN"))
            await send(message)

        await self.app(scope, receive, send_with_headers)
