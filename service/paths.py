"""Paths as clients write them: ``//retrieval`` is ``/retrieval``.

Dify builds its request URL as ``f"{endpoint}/retrieval"``, so an endpoint registered with
a trailing slash asks for ``//retrieval``. Repeated slashes are collapsed before anything
reads the path (routing, the guards, the error dialect), so every such spelling reaches
the same route under the same checks.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

_REPEATED = re.compile(r"/{2,}")


class CollapseSlashesMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and "//" in path:
            scope = {**scope, "path": _REPEATED.sub("/", path)}
            if isinstance(scope.get("raw_path"), bytes):
                scope["raw_path"] = re.sub(rb"/{2,}", b"/", scope["raw_path"])
        await self.app(scope, receive, send)
