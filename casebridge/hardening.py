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
        headers = dict(scope.get("headers") or ())
        # a browser's form, not the API: a page, with the way back to the case it came from
        page = _back(scope) if b"text/html" in headers.get(b"accept", b"") else None
        declared = headers.get(b"content-length")
        if declared is not None and (
            not declared.isdigit() or len(declared) > 12 or int(declared) > limit
        ):
            await self._refuse(send, limit, page=page)
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
                await self._refuse(send, limit, page=page)

        try:
            await self.app(scope, limited, answering)
        except Exception:
            if not too_large:
                raise
        if too_large and not refused:
            await self._refuse(send, limit, page=page)

    @staticmethod
    async def _refuse(send: Send, limit: int, *, page: str | None = None) -> None:
        """413: JSON for the API; for a browser's form (a phone's photo too large), a page a
        person can read, in both of the pages' languages, with the way back."""
        megabytes = f"{limit / 1_048_576:.0f} MB"
        if page is not None:
            body = _TOO_LARGE.format(size=megabytes, back=page).encode()
            kind = b"text/html; charset=utf-8"
        else:
            body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
            kind = b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", kind),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


_CASE_PAGE = re.compile(r"/cases/([A-Za-z0-9-]{1,40})(?:/.*)?")


def _back(scope: Scope) -> str:
    """Where a refused form's page leads back to: its case, else the work list."""
    found = _CASE_PAGE.fullmatch(scope.get("path", ""))
    return f"/cases/{found.group(1)}" if found else "/cases"


_TOO_LARGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Too large · husvakt</title><link rel="stylesheet" href="/static/app.css"></head>
<body><main id="main">
<h1 role="alert">Too large</h1>
<p>What you sent is larger than husvakt takes ({size}). A photo: take it again at a lower
resolution, or send a smaller copy.</p>
<p lang="sv">Det du skickade är större än husvakt tar emot ({size}). Ett foto: ta det igen med
lägre upplösning, eller skicka en mindre kopia.</p>
<p><a href="{back}">Back</a></p>
</main></body></html>
"""


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
