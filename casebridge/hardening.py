"""What every response of the case server carries, and what every request may send.

Two ASGI middlewares around the whole app (API and pages):
- `BodyLimit`: a request body larger than the limit is refused with 413 before it is read —
  by its `Content-Length`, or, when it is sent in chunks, as soon as the bytes received pass
  the limit (nothing is buffered beyond it). Uploads (POSTs to the paths `uploads` matches)
  have their own, larger limit.
- `SecurityHeaders`: a Content-Security-Policy without inline script, no framing, no MIME
  sniffing, no referrer to other sites, and `Cache-Control: no-store` on everything but the
  static files (pages and API answers carry access notes and addresses).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["MAX_BODY", "BodyLimit", "SecurityHeaders"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The largest request body taken: far above any form or API body, far below harm.
MAX_BODY = 64 * 1024

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'"
)
#: The interactive API docs load their script from a CDN: no CSP of ours there.
_DOCS = ("/docs", "/redoc", "/openapi.json")


class BodyLimit:
    def __init__(
        self,
        app: App,
        *,
        limit: int = MAX_BODY,
        uploads: tuple[re.Pattern[str], int] | None = None,
    ) -> None:
        self.app = app
        self.default = limit
        self.uploads = uploads

    def _limit(self, scope: Scope) -> int:
        if self.uploads is not None and scope.get("method") == "POST":
            pattern, limit = self.uploads
            if pattern.fullmatch(scope.get("path", "")):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and (
            not declared.isdigit() or len(declared) > 12 or int(declared) > limit
        ):
            await self._refuse(send, limit)
            return
        received, too_large, refused = 0, False, False

        async def limited() -> Message:
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # the app sees the client go away; what it answers is replaced by a 413
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def answering(message: Message) -> None:
            nonlocal refused
            if not too_large:
                await send(message)
            elif not refused and message["type"] == "http.response.start":
                refused = True
                await self._refuse(send, limit)

        try:
            await self.app(scope, limited, answering)
        except Exception:
            if not too_large:
                raise
        if too_large and not refused:
            await self._refuse(send, limit)

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        extra = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"same-origin"),
        ]
        if not path.startswith(_DOCS):
            extra.append((b"content-security-policy", CSP.encode()))
        if not path.startswith("/static/"):
            extra.append((b"cache-control", b"no-store"))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in extra if k not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
