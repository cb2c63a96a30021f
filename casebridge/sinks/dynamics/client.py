"""The Dataverse Web API over httpx, signed in with msal (OAuth 2.0 client credentials).

What the service says about load is obeyed, never fought: a 429 (service protection) or a
503 pauses the whole sink for its `Retry-After`; a 401 means the token expired or was revoked,
so the token is dropped and fetched anew, once. Every response is read up to `MAX_BODY` and
decoded as bounded JSON; links the service hands back (next pages, delta links) are followed
only when they lie under the configured API root.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import hashlib
import logging
import math
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from casebridge.sinks import SinkDownError
from casebridge.sinks.config import DynamicsSinkConfig, as_guid
from casebridge.sinks.dynamics import batch
from casebridge.sinks.dynamics.mapping import Request
from gateway.secrets import read_secret
from gateway.wire import WireError, loads_bounded

__all__ = ["MAX_BODY", "Credentials", "DataverseClient", "DataverseError", "Response"]

log = logging.getLogger("husvakt.casebridge.dynamics")

#: The largest response read (a page of change tracking with 500 records is ~0.5 MB).
MAX_BODY = 8 * 1024 * 1024
#: Arrays and objects in one response (a page of 500 records with their annotations is
#: under 2,000).
MAX_CONTAINERS = 50_000
#: A Retry-After longer than this is taken as this (a broken header must not stop us a week).
MAX_RETRY_AFTER = 3600.0


class DataverseError(Exception):
    """A request the service refused for this record (4xx other than 401/429): the case's
    problem, not the whole sink's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: Any

    def entity_id(self) -> str | None:
        """The GUID in `OData-EntityId: …/incidents(<guid>)`, if the header holds one."""
        return entity_id(self.headers.get("odata-entityid", ""))


def entity_id(url: str) -> str | None:
    _, sep, tail = url.rpartition("(")
    if not sep or not tail.endswith(")"):
        return None
    return as_guid(tail[:-1])


def retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), bounded."""
    if not value:
        return None
    value = value.strip()[:64]
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def _error_text(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            code = str(error.get("code", ""))[:40]
            message = str(error.get("message", ""))[:300]
            return f"{code} {message}".strip()
    return ""


class Credentials:
    """Access tokens for the Web API from msal's confidential client (a secret or a
    certificate); msal caches a token until it nearly expires."""

    def __init__(self, config: DynamicsSinkConfig) -> None:
        self._config = config
        self._app: Any = None
        self._session: Any = None
        self._lock = asyncio.Lock()

    def _client_credential(self) -> Any:
        config = self._config
        if config.client_secret_file is not None:
            secret = read_secret(config.client_secret_file)
            if not secret:
                raise SinkDownError(f"{config.client_secret_file} is empty")
            return secret
        assert config.certificate_file is not None
        return certificate_credential(config.certificate_file)

    def _build(self) -> Any:
        import msal  # noqa: PLC0415 - the optional `dynamics` extra, needed only here
        import requests  # noqa: PLC0415 - msal's own HTTP library

        config = self._config
        session = self._session = requests.Session()
        # Given per request: a session's `verify` loses to REQUESTS_CA_BUNDLE in the
        # environment, and the configured CA must win.
        session.request = functools.partial(  # type: ignore[method-assign]
            session.request,
            verify=str(config.ca_file) if config.ca_file else True,
            timeout=config.timeout,
        )
        return msal.ConfidentialClientApplication(
            config.client_id,
            authority=config.authority_url,
            client_credential=self._client_credential(),
            http_client=session,
            # the authority is the configured one; no lookup at login.microsoftonline.com
            instance_discovery=config.authority is None,
            validate_authority=config.authority is None,
        )

    async def token(self) -> str:
        async with self._lock:
            try:
                if self._app is None:
                    self._app = await asyncio.to_thread(self._build)
                result = await asyncio.to_thread(
                    self._app.acquire_token_for_client, scopes=[f"{self._config.url}/.default"]
                )
            except SinkDownError:
                raise
            except Exception as exc:  # msal raises what requests and its parsers raise
                raise SinkDownError(f"sign-in to {self._config.authority_url}: {exc}") from exc
        if not isinstance(result, dict) or "access_token" not in result:
            detail = (
                result.get("error_description") or result.get("error")
                if isinstance(result, dict)
                else result
            )
            raise SinkDownError(f"sign-in refused: {str(detail)[:300]}")
        return str(result["access_token"])

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    async def forget(self) -> None:
        """Drop the cached token (the service said it is no longer valid)."""
        async with self._lock:
            if self._app is not None:
                await asyncio.to_thread(self._app.remove_tokens_for_client)


def certificate_credential(path: Path) -> dict[str, str]:
    """msal's certificate credential from a PEM file holding the certificate and its key."""
    from cryptography import x509  # noqa: PLC0415 - comes with msal
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

    pem = path.read_bytes()
    try:
        certificate = x509.load_pem_x509_certificate(pem)
        key = serialization.load_pem_private_key(pem, password=None)
    except ValueError as exc:
        raise SinkDownError(f"{path}: not a PEM certificate with its private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SinkDownError(
            f"{path}: Microsoft Entra takes RSA keys only, not {type(key).__name__}"
        )
    der = certificate.public_bytes(serialization.Encoding.DER)
    return {
        "private_key": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        "thumbprint": hashlib.sha1(der).hexdigest(),  # noqa: S324 - the x5t header is SHA-1
        "public_certificate": certificate.public_bytes(serialization.Encoding.PEM).decode(),
    }


class DataverseClient:
    """Requests to one environment's Web API as the application user."""

    def __init__(
        self,
        config: DynamicsSinkConfig,
        *,
        credentials: Credentials | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self.api = config.api
        self._credentials = credentials or Credentials(config)
        if http is None:
            verify: ssl.SSLContext | bool = True
            if config.ca_file is not None:
                verify = ssl.create_default_context(cafile=str(config.ca_file))
            http = httpx.AsyncClient(timeout=config.timeout, verify=verify)
        self._http = http
        #: requests sent and refused (by status), for the metrics
        self.sent = 0

    async def aclose(self) -> None:
        await self._http.aclose()
        self._credentials.close()

    async def send(self, request: Request, *, prefer: Sequence[str] = ()) -> Response:
        """The response to `request` (any 2xx, 404 or 412: the caller decides), or
        `DataverseError` for another refusal of this record, or `SinkDownError`."""
        body = orjson.dumps(request.body) if request.body is not None else None
        headers = dict(request.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        return await self._call(request.method, self.api + request.path, body, headers, prefer)

    async def follow(self, url: str, *, prefer: Sequence[str] = ()) -> Response:
        """GET a link the service gave (a next page, a delta link): only one under our API."""
        if not url.startswith(self.api) or len(url) > 8192:
            raise DataverseError(0, f"a link outside {self.api} was not followed")
        return await self._call("GET", url, None, {}, prefer)

    async def batch(self, requests: Sequence[Request]) -> list[batch.Part]:
        """Run independent requests as one `$batch` (continue on error); their responses in
        order."""
        content_type, body = batch.encode(
            self.api, [(r.method, r.path, r.body, r.headers) for r in requests]
        )
        response = await self._call(
            "POST",
            self.api + "$batch",
            body,
            {"Content-Type": content_type},
            ("odata.continue-on-error",),
            raw=True,
        )
        try:
            return batch.decode(
                response.headers.get("content-type", ""), response.body, expected=len(requests)
            )
        except batch.BatchError as exc:
            raise SinkDownError(f"$batch: {exc}") from exc

    async def _call(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        prefer: Sequence[str],
        *,
        raw: bool = False,
    ) -> Response:
        for attempt in (1, 2):
            token = await self._credentials.token()
            sent = {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "OData-Version": "4.0",
                "OData-MaxVersion": "4.0",
                **headers,
            }
            if prefer:
                sent["Prefer"] = ", ".join(prefer)
            status, answer, content = await self._exchange(method, url, body, sent)
            self.sent += 1
            if status == 401 and attempt == 1:
                log.info("the Web API refused the token (expired or revoked); signing in again")
                await self._credentials.forget()
                continue
            break
        if status == 401:
            raise SinkDownError(
                "the Web API refuses a fresh token: is the application user set up?"
            )
        if status in {429, 503}:
            wait = retry_after(answer.get("retry-after"))
            raise SinkDownError(f"HTTP {status} (service protection limits)", retry_after=wait)
        if status >= 500:
            raise SinkDownError(f"HTTP {status} from the Web API")
        if raw:
            if status >= 300:
                raise SinkDownError(f"$batch: HTTP {status}")
            return Response(status, answer, content)
        parsed: Any = None
        if content.strip():
            try:
                parsed = loads_bounded(content, max_bytes=MAX_BODY, max_containers=MAX_CONTAINERS)
            except WireError as exc:
                if status < 300:  # a proxy's page, a broken service: not this record's fault
                    raise SinkDownError(f"HTTP {status} with an unusable body: {exc}") from exc
        if status >= 400 and status not in (404, 412):
            raise DataverseError(status, _error_text(parsed) or "refused")
        return Response(status, answer, parsed)

    async def _exchange(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            async with self._http.stream(method, url, content=body, headers=headers) as response:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_BODY:
                        raise SinkDownError(f"a response over {MAX_BODY} bytes from {url[:200]}")
                    chunks.append(chunk)
                answer = {k.lower(): v for k, v in response.headers.items()}
                return response.status_code, answer, b"".join(chunks)
        except httpx.HTTPError as exc:
            raise SinkDownError(f"{self.config.url}: {exc!r}") from exc
