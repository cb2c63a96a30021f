"""OData `$batch` bodies (multipart/mixed of `application/http` parts), sans-I/O and bounded.

`encode` writes independent requests (no change sets: one failing does not undo the others,
with `Prefer: odata.continue-on-error` the rest still run); `decode` reads the response parts
in order. A response that is not what the protocol says — no boundary, too many parts, a part
that is not an HTTP response, a header block or body over the limits — raises `BatchError`,
never something else.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.wire import loads_bounded

__all__ = ["MAX_PARTS", "BatchError", "Part", "decode", "encode"]

#: Dataverse takes up to 1000 requests in one batch.
MAX_PARTS = 1000
_MAX_HEADERS = 100
_MAX_LINE = 8192
_STATUS = re.compile(r"^HTTP/1\.[01] (\d{3})(?: .*)?$")
_BOUNDARY = re.compile(r'boundary="?([A-Za-z0-9\'()+_,\-./:=?]{1,70})"?')


class BatchError(ValueError):
    """A `$batch` response that does not follow the protocol."""


@dataclass(frozen=True)
class Part:
    """One response in a batch: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON, bounded like every answer (`WireError` when it is not)."""
        if not self.body.strip():
            return None
        return loads_bounded(self.body, max_bytes=len(self.body), max_containers=10_000)


def encode(
    api: str,
    requests: Sequence[tuple[str, str, dict[str, Any] | None, Sequence[tuple[str, str]]]],
) -> tuple[str, bytes]:
    """(content type, body) of a batch of (method, path below `api`, JSON body, headers)."""
    if not 0 < len(requests) <= MAX_PARTS:
        raise ValueError(f"a batch holds 1 to {MAX_PARTS} requests, not {len(requests)}")
    boundary = f"batch_{secrets.token_hex(12)}"
    out: list[str] = []
    for n, (method, path, body, headers) in enumerate(requests, 1):
        lines = [
            f"--{boundary}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: {n}",
            "",
            f"{method} {api}{path} HTTP/1.1",
        ]
        lines += [f"{k}: {v}" for k, v in headers]
        if body is not None:
            lines.append("Content-Type: application/json")
            lines += ["", json.dumps(body, ensure_ascii=False)]
        else:
            lines.append("")
        out.append("\r\n".join(lines) + "\r\n")
    return f"multipart/mixed; boundary={boundary}", ("".join(out) + f"--{boundary}--\r\n").encode()


def boundary_of(content_type: str) -> str:
    if not content_type.lower().startswith("multipart/mixed"):
        raise BatchError(f"a batch response is multipart/mixed, not {content_type[:100]!r}")
    found = _BOUNDARY.search(content_type)
    if found is None:
        raise BatchError("the batch response names no boundary")
    return found.group(1)


def _headers(lines: list[str]) -> dict[str, str]:
    if len(lines) > _MAX_HEADERS:
        raise BatchError("too many headers in a batch part")
    headers: dict[str, str] = {}
    for line in lines:
        if len(line) > _MAX_LINE:
            raise BatchError("a header line in a batch part is too long")
        name, sep, value = line.partition(":")
        if not sep:
            raise BatchError(f"not a header: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


def _split(block: str) -> tuple[list[str], str]:
    head, sep, rest = block.partition("\r\n\r\n")
    if not sep:
        head, sep, rest = block.partition("\n\n")
    return [line for line in head.splitlines() if line], rest


def decode(content_type: str, body: bytes, *, expected: int) -> list[Part]:
    """The responses of a batch of `expected` requests, in order (fewer when the service
    stopped at an error without `continue-on-error`)."""
    boundary = boundary_of(content_type)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BatchError("the batch response is not UTF-8") from exc
    delimiter = f"--{boundary}"
    chunks = text.split(delimiter)
    if len(chunks) < 2 or not chunks[-1].startswith("--"):
        raise BatchError("the batch response does not end with its closing boundary")
    parts = chunks[1:-1]
    if len(parts) > min(expected, MAX_PARTS):
        raise BatchError(f"{len(parts)} responses to a batch of {expected} requests")
    out: list[Part] = []
    for chunk in parts:
        envelope, inner = _split(chunk.lstrip("\r\n"))
        if "application/http" not in _headers(envelope).get("content-type", ""):
            raise BatchError("a batch part that is not application/http")
        head, payload = _split(inner)
        if not head:
            raise BatchError("a batch part without a status line")
        status = _STATUS.match(head[0])
        if status is None:
            raise BatchError(f"not an HTTP status line: {head[0][:80]!r}")
        out.append(
            Part(
                status=int(status.group(1)),
                headers=_headers(head[1:]),
                body=payload.rstrip("\r\n").encode(),
            )
        )
    return out
