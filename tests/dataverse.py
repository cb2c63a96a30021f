"""A Dataverse stand-in for the tests: the Web API v9.2 and a Microsoft identity platform
token endpoint, over TLS on a loopback port, following the documented semantics strictly.

- Upsert by alternate key (`PATCH incidents(hv_husvaktcaseid='HV-…')`): no conditional
  header creates or updates; `If-None-Match: *` creates only (412 when the record exists);
  `If-Match: *` updates only (404 when it does not). 204 with `OData-EntityId`.
- A resolved or cancelled incident refuses updates of its columns; `statecode` 1 can only be
  reached through `CloseIncident` (with an `incidentresolution`), which refuses an incident
  that is not active; `statecode` 0 + `statuscode` 1 reactivates.
- Unknown columns and `@odata.bind` to records that do not exist are 400s.
- Bearer tokens from the token endpoint (client secret, or a client assertion signed with
  the registered certificate); an unknown or expired token is a 401 with `WWW-Authenticate`.
- `throttle(n, retry_after)`: the next n API requests are 429s with `Retry-After`.
- Change tracking: `Prefer: odata.track-changes` answers with `@odata.deltaLink`
  (`$deltatoken`), pages with `@odata.nextLink` per `odata.maxpagesize`; deleted records come
  as `$deletedEntity`.
- `$batch`: multipart/mixed of independent requests, each answered in order; without
  `odata.continue-on-error` the batch stops at the first error.
- `EntityDefinitions` with attributes, alternate keys and option sets for `husvakt dynamics
  check`; `WhoAmI`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
import trustme
import uvicorn
from cryptography import x509
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from husvakt.broker import free_port

TENANT = "contoso.onmicrosoft.com"
API = "/api/data/v9.2/"
KEY = "hv_husvaktcaseid"
INCIDENT_COLUMNS = {
    "incidentid",
    KEY,
    "title",
    "description",
    "prioritycode",
    "casetypecode",
    "caseorigincode",
    "statecode",
    "statuscode",
    "customerid_account",
    "subjectid",
    "ownerid",
}
ALERT_COLUMNS = {
    "msdyn_iotalertid",
    KEY,
    "msdyn_description",
    "msdyn_alerttime",
    "msdyn_alerttype",
    "msdyn_deviceid",
    "msdyn_alertdata",
    "msdyn_customerid_account",
    "statecode",
    "statuscode",
}
OPTIONS = {
    "prioritycode": [1, 2, 3],
    "casetypecode": [1, 2, 3],
    "caseorigincode": [1, 2, 3, 700610000],
}
_ADDRESS = re.compile(r"^(\w+)\((.*)\)$")
_GUID = re.compile(r"^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$")


def _error(status: int, message: str, code: str = "0x80040216") -> tuple[int, dict[str, str], Any]:
    return status, {}, {"error": {"code": code, "message": message}}


@dataclass
class Table:
    set_name: str
    id_column: str
    columns: set[str]
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: guid → change version; deleted guid → version
    changed: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)


class Dataverse:
    """The service's state and its request handling (one ASGI app serves it)."""

    def __init__(self, *, ca: trustme.CA, client_id: str, secret: str) -> None:
        self.ca = ca
        self.client_id = client_id
        self.secret = secret
        self.certificate: bytes | None = None  # PEM a client assertion may be signed with
        self.app_user = str(uuid.uuid4())
        self.tokens: set[str] = set()
        self.tokens_issued = 0
        self.version = 0
        self.tables = {
            "incidents": Table("incidents", "incidentid", INCIDENT_COLUMNS),
            "msdyn_iotalerts": Table("msdyn_iotalerts", "msdyn_iotalertid", ALERT_COLUMNS),
            "annotations": Table(
                "annotations",
                "annotationid",
                {
                    "annotationid",
                    "subject",
                    "notetext",
                    "filename",
                    "mimetype",
                    "documentbody",
                    "objectid_incident",
                    "objectid_msdyn_iotalert",
                },
            ),
            "accounts": Table("accounts", "accountid", {"accountid", "name"}),
            "subjects": Table("subjects", "subjectid", {"subjectid", "title"}),
            "incidentresolutions": Table(
                "incidentresolutions",
                "activityid",
                {"activityid", "subject", "description", "incidentid"},
            ),
        }
        self.users = {self.app_user: "husvakt (application user)"}
        self._throttle = 0
        self._retry_after = 1
        #: answers given (in turn) to the next API requests instead of the real ones:
        #: (status, headers, raw body) — what a broken or hostile service might send
        self.hostile: list[tuple[int, dict[str, str], bytes]] = []
        #: (method, path) of every API request, in order (batched ones too)
        self.log: list[tuple[str, str]] = []
        self.base = ""

    # --- what tests do to it ----------------------------------------------------------------

    def add(self, set_name: str, **row: Any) -> str:
        table = self.tables[set_name]
        guid = str(uuid.uuid4())
        self._store(table, guid, {table.id_column: guid, **row}, self.app_user)
        return guid

    def add_user(self, name: str) -> str:
        guid = str(uuid.uuid4())
        self.users[guid] = name
        return guid

    def throttle(self, n: int, retry_after: int = 1) -> None:
        self._throttle, self._retry_after = n, retry_after

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def incidents(self) -> dict[str, dict[str, Any]]:
        """Incidents by husvakt case id."""
        return {r[KEY]: r for r in self.tables["incidents"].rows.values() if r.get(KEY)}

    def notes(self, incident: str) -> list[dict[str, Any]]:
        return [
            n
            for n in self.tables["annotations"].rows.values()
            if n.get("objectid_incident") == incident
            or n.get("objectid_msdyn_iotalert") == incident
        ]

    def act_as(self, user: str, set_name: str, guid: str, **changes: Any) -> None:
        """Someone in Dynamics changes a record (resolves it, reassigns it)."""
        table = self.tables[set_name]
        self._store(table, guid, {**table.rows[guid], **changes}, user)

    def delete(self, set_name: str, guid: str) -> None:
        table = self.tables[set_name]
        del table.rows[guid]
        self.version += 1
        table.changed.pop(guid, None)
        table.deleted[guid] = self.version

    def _store(self, table: Table, guid: str, row: dict[str, Any], user: str) -> None:
        self.version += 1
        row.setdefault("statecode", 0)
        row.setdefault("statuscode", 1)
        row.setdefault("ownerid", user)
        row["modifiedby"] = user
        row["versionnumber"] = self.version
        table.rows[guid] = row
        table.changed[guid] = self.version

    # --- sign-in ----------------------------------------------------------------------------

    def openid(self) -> dict[str, Any]:
        root = f"{self.base}/{TENANT}"
        return {
            "issuer": f"{root}/v2.0",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        }

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("client_id") != self.client_id
        ):
            return 400, {
                "error": "unauthorized_client",
                "error_description": "AADSTS700016: unknown client",
            }
        if not form.get("scope", "").endswith("/.default"):
            return 400, {"error": "invalid_scope", "error_description": "AADSTS70011: scope"}
        if "client_assertion" in form:
            if self.certificate is None:
                return 401, {"error": "invalid_client", "error_description": "no certificate"}
            key = x509.load_pem_x509_certificate(self.certificate).public_key()
            try:
                claims = jwt.decode(
                    form["client_assertion"],
                    key,
                    algorithms=["RS256", "PS256"],
                    audience=self.openid()["token_endpoint"],
                )
            except jwt.PyJWTError as exc:
                return 401, {"error": "invalid_client", "error_description": f"AADSTS700027: {exc}"}
            if claims.get("sub") != self.client_id:
                return 401, {
                    "error": "invalid_client",
                    "error_description": "AADSTS700027: subject",
                }
        elif form.get("client_secret") != self.secret:
            return 401, {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.",
            }
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        self.tokens_issued += 1
        return 200, {
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": token,
        }

    # --- the Web API --------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(target)
        path = unquote(parts.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if not path.startswith(API):
            return _error(404, "not found")
        resource = path[len(API) :]
        self.log.append((method, resource))
        if self._throttle > 0:
            self._throttle -= 1
            return (
                429,
                {"Retry-After": str(self._retry_after)},
                _error(
                    429,
                    "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
                    "0x80072322",
                )[2],
            )
        prefer = headers.get("prefer", "")
        if resource == "WhoAmI" and method == "GET":
            return (
                200,
                {},
                {
                    "UserId": headers["x-user"],
                    "BusinessUnitId": str(uuid.UUID(int=1)),
                    "OrganizationId": str(uuid.UUID(int=2)),
                },
            )
        if resource == "CloseIncident" and method == "POST":
            return self._close(json.loads(body), headers["x-user"])
        if resource.startswith("EntityDefinitions("):
            return self._metadata(resource)
        if resource in self.tables and method == "GET":
            return self._track(self.tables[resource], query, prefer)
        found = _ADDRESS.match(resource)
        if found is None or found.group(1) not in self.tables:
            return _error(
                404, f"Resource not found for the segment '{resource[:60]}'.", "0x8006088a"
            )
        return self._on_record(
            method, self.tables[found.group(1)], found.group(2), query, headers, body
        )

    def _on_record(  # noqa: PLR0917 - one record's request, as `handle` parsed it
        self,
        method: str,
        table: Table,
        address: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, dict[str, str], Any]:
        """GET, DELETE or PATCH (upsert) one record, by its id or its alternate key."""
        guid = self._address(table, address)
        if guid is False:
            return _error(400, "Invalid key", "0x80060888")
        if method == "GET":
            if guid is None or guid not in table.rows:
                return _error(
                    404, f"{table.set_name} With Id = {address} Does Not Exist", "0x80040217"
                )
            row = table.rows[guid]
            select = query.get("$select")
            shown = {k: row.get(k) for k in select.split(",")} if select else dict(row)
            shown[table.id_column] = guid
            return 200, {}, {"@odata.etag": f'W/"{row["versionnumber"]}"', **shown}
        if method == "DELETE":
            if guid is None or guid not in table.rows:
                return _error(
                    404, f"{table.set_name} With Id = {address} Does Not Exist", "0x80040217"
                )
            self.delete(table.set_name, guid)
            return 204, {}, None
        if method == "PATCH":
            return self._upsert(
                table,
                address=address,
                guid=guid,
                headers=headers,
                body=json.loads(body),
                user=headers["x-user"],
            )
        return _error(405, "method not allowed")

    def _address(self, table: Table, inside: str) -> str | bool | None:
        """The guid the address names (None: a key that names no record yet; False: bad)."""
        if _GUID.match(inside.lower()):
            return inside.lower()
        column, sep, value = inside.partition("=")
        if (
            not sep
            or column != KEY
            or not (value.startswith("'") and value.endswith("'"))
            or len(value) < 2
        ):
            return False
        wanted = value[1:-1].replace("''", "'")
        for guid, row in table.rows.items():
            if row.get(KEY) == wanted:
                return guid
        return None

    def _upsert(  # noqa: PLR0912 - a branch per documented rule of an upsert
        self,
        table: Table,
        *,
        address: str,
        guid: str | None,
        headers: dict[str, str],
        body: Any,
        user: str,
    ) -> tuple[int, dict[str, str], Any]:
        exists = guid is not None and guid in table.rows
        if headers.get("if-none-match") == "*" and exists:
            return _error(412, "A record with matching key values already exists.", "0x80040237")
        if headers.get("if-match") == "*" and not exists:
            return _error(404, f"{table.set_name} With Id = {address} Does Not Exist", "0x80040217")
        if not isinstance(body, dict):
            return _error(400, "The request body is not an object")
        row: dict[str, Any] = {}
        for name, value in body.items():
            if name.endswith("@odata.bind"):
                column = name.split("@", 1)[0]
                target = _ADDRESS.match(str(value).lstrip("/"))
                if (
                    column not in table.columns
                    or target is None
                    or target.group(1) not in self.tables
                ):
                    return _error(
                        400,
                        f"An undeclared property '{column}' which only has property annotations in the payload",
                        "0x80060888",
                    )
                other = self.tables[target.group(1)]
                if target.group(2).lower() not in other.rows:
                    return _error(
                        400,
                        f"{other.set_name} With Id = {target.group(2)} Does Not Exist",
                        "0x80040217",
                    )
                row[column] = target.group(2).lower()
            elif name not in table.columns:
                return _error(
                    400,
                    f"The property '{name}' does not exist on type 'Microsoft.Dynamics.CRM.{table.set_name}'.",
                    "0x80060888",
                )
            else:
                row[name] = value
        for name, options in OPTIONS.items():
            if name in row and row[name] not in options:
                return _error(
                    400,
                    f"A validation error occurred. The value {row[name]} of '{name}' is outside the valid range.",
                    "0x80044331",
                )
        if exists:
            assert guid is not None
            current = table.rows[guid]
            if "statecode" in row:
                reactivate = row["statecode"] == 0 and row.get("statuscode") == 1
                if not reactivate and table.set_name == "incidents":
                    return _error(
                        400, "Use the CloseIncident action to resolve a case.", "0x80040203"
                    )
            elif current.get("statecode", 0) != 0 and table.set_name == "incidents":
                return _error(
                    400,
                    "This case has already been resolved. Close and reopen the case, and then try again.",
                    "0x80043e09",
                )
            self._store(table, guid, {**current, **row}, user)
            return 204, {"OData-EntityId": f"{self.base}{API}{table.set_name}({guid})"}, None
        new = guid or (address.lower() if _GUID.match(address.lower()) else str(uuid.uuid4()))
        if "statecode" in row and row["statecode"] != 0:
            return _error(400, "A record is created active.", "0x80040203")
        self._store(table, new, {table.id_column: new, **row}, user)
        return 204, {"OData-EntityId": f"{self.base}{API}{table.set_name}({new})"}, None

    def _close(self, body: Any, user: str) -> tuple[int, dict[str, str], Any]:
        resolution = body.get("IncidentResolution") if isinstance(body, dict) else None
        status = body.get("Status") if isinstance(body, dict) else None
        if not isinstance(resolution, dict) or status not in (5, 1000):
            return _error(400, "CloseIncident needs IncidentResolution and Status")
        target = _ADDRESS.match(str(resolution.get("incidentid@odata.bind", "")).lstrip("/"))
        incidents = self.tables["incidents"]
        if target is None or target.group(2).lower() not in incidents.rows:
            return _error(404, "incident Does Not Exist", "0x80040217")
        guid = target.group(2).lower()
        row = incidents.rows[guid]
        if row.get("statecode") != 0:
            return _error(
                400,
                "This case has already been resolved. Close and reopen the case, and then try again.",
                "0x80043e09",
            )
        if not resolution.get("subject"):
            return _error(400, "An incidentresolution needs a subject")
        self.add(
            "incidentresolutions",
            subject=resolution["subject"],
            description=resolution.get("description"),
            incidentid=guid,
        )
        self._store(incidents, guid, {**row, "statecode": 1, "statuscode": status}, user)
        return 204, {}, None

    def _track(
        self, table: Table, query: dict[str, str], prefer: str
    ) -> tuple[int, dict[str, str], Any]:
        select = query.get("$select", table.id_column).split(",")
        size = int(m.group(1)) if (m := re.search(r"odata\.maxpagesize=(\d+)", prefer)) else 5000
        since = int(query.get("$deltatoken", "0") or 0)
        start = int(query.get("$skiptoken", "0") or 0)
        if since > self.version:
            return _error(
                400, "Version stamp associated with the client has expired.", "0x80044352"
            )
        changed = sorted((v, g) for g, v in table.changed.items() if v > since and g in table.rows)
        items: list[dict[str, Any]] = []
        for _, guid in changed:
            row = table.rows[guid]
            item = {"@odata.etag": f'W/"{row["versionnumber"]}"'}
            for column in select:
                if column.startswith("_") and column.endswith("_value"):
                    name = column[1:-6]
                    item[column] = row.get(name)
                    if name in ("modifiedby", "ownerid") and row.get(name) in self.users:
                        item[f"{column}@OData.Community.Display.V1.FormattedValue"] = self.users[
                            row[name]
                        ]
                else:
                    item[column] = row.get(column)
            item[table.id_column] = guid
            items.append(item)
        if since:
            for guid, v in table.deleted.items():
                if v > since:
                    items.append(
                        {
                            "@odata.context": f"{self.base}{API}$metadata#{table.set_name}/$deletedEntity",
                            "id": guid,
                            "reason": "deleted",
                        }
                    )
        page = items[start : start + size]
        link = f"{self.base}{API}{table.set_name}?$select={','.join(select)}"
        out: dict[str, Any] = {
            "@odata.context": f"{self.base}{API}$metadata#{table.set_name}/$delta",
            "value": page,
        }
        if start + size < len(items):
            out["@odata.nextLink"] = f"{link}&$deltatoken={since}&$skiptoken={start + size}"
        elif "odata.track-changes" in prefer or since:
            out["@odata.deltaLink"] = f"{link}&$deltatoken={self.version}"
        return 200, {"Preference-Applied": "odata.track-changes"}, out

    def _metadata(self, resource: str) -> tuple[int, dict[str, str], Any]:
        found = re.match(
            r"^EntityDefinitions\(LogicalName='(\w+)'\)(?:/Attributes\(LogicalName='(\w+)'\)/Microsoft\.Dynamics\.CRM\.PicklistAttributeMetadata)?$",
            resource,
        )
        if found is None:
            return _error(400, "bad metadata request")
        logical, attribute = found.groups()
        columns = {"incident": INCIDENT_COLUMNS, "msdyn_iotalert": ALERT_COLUMNS}.get(logical)
        if columns is None:
            return _error(404, f"Could not find an entity with name {logical}", "0x80040217")
        if attribute is not None:
            if attribute not in OPTIONS or attribute not in columns:
                return _error(404, f"attribute {attribute} is not a picklist")
            return (
                200,
                {},
                {
                    "LogicalName": attribute,
                    "OptionSet": {"Options": [{"Value": v} for v in OPTIONS[attribute]]},
                },
            )
        return (
            200,
            {},
            {
                "LogicalName": logical,
                "EntitySetName": "incidents" if logical == "incident" else "msdyn_iotalerts",
                "ChangeTrackingEnabled": True,
                "Attributes": [{"LogicalName": c} for c in sorted(columns)],
                "Keys": [
                    {
                        "LogicalName": f"{KEY}_key",
                        "KeyAttributes": [KEY],
                        "EntityKeyIndexStatus": "Active",
                    }
                ],
            },
        )

    # --- HTTP -------------------------------------------------------------------------------

    def app(self) -> Starlette:
        async def openid(request: Request) -> Response:
            return JSONResponse(self.openid())

        async def token(request: Request) -> Response:
            form = {k: str(v) for k, v in (await request.form()).items()}
            status, body = self.token(form)
            return JSONResponse(body, status_code=status)

        async def api(request: Request) -> Response:
            auth = request.headers.get("authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
                return JSONResponse(
                    {
                        "error": {
                            "code": "0x80072184",
                            "message": "The access token is invalid or has expired.",
                        }
                    },
                    status_code=401,
                    headers={
                        "WWW-Authenticate": f"Bearer authorization_uri={self.base}/{TENANT}/oauth2/authorize"
                    },
                )
            if self.hostile:
                status, extra, raw = self.hostile.pop(0)
                return Response(raw, status_code=status, headers=extra)
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            headers["x-user"] = self.app_user
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            if request.url.path == f"{API}$batch":
                self.log.append(("POST", "$batch"))
                return self._batch(headers, body)
            status, extra, out = self.handle(request.method, target, headers, body)
            return _respond(status, extra, out)

        return Starlette(
            routes=[
                Route(f"/{TENANT}/v2.0/.well-known/openid-configuration", openid),
                Route(f"/{TENANT}/oauth2/v2.0/token", token, methods=["POST"]),
                Route(
                    "/api/data/v9.2/{rest:path}", api, methods=["GET", "POST", "PATCH", "DELETE"]
                ),
            ]
        )

    def _batch(self, headers: dict[str, str], body: bytes) -> Response:
        found = re.search(r"boundary=([^;]+)", headers.get("content-type", ""))
        if found is None:
            return JSONResponse(_error(400, "no boundary")[2], status_code=400)
        go_on = "odata.continue-on-error" in headers.get("prefer", "")
        chunks = body.decode().split(f"--{found.group(1)}")[1:-1]
        if len(chunks) > 1000:
            return JSONResponse(_error(400, "over 1000 requests in a batch")[2], status_code=400)
        boundary = f"batchresponse_{uuid.uuid4()}"
        out: list[str] = []
        for chunk in chunks:
            _, _, inner = chunk.lstrip("\r\n").partition("\r\n\r\n")
            head, _, payload = inner.partition("\r\n\r\n")
            lines = head.split("\r\n")
            method, url, _ = lines[0].split(" ", 2)
            part = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:])
            }
            part["x-user"] = headers["x-user"]
            status, extra, answer = self.handle(
                method,
                urlsplit(url).path + (f"?{urlsplit(url).query}" if urlsplit(url).query else ""),
                part,
                payload.strip().encode(),
            )
            text = [
                f"--{boundary}",
                "Content-Type: application/http",
                "Content-Transfer-Encoding: binary",
                "",
                f"HTTP/1.1 {status} {'OK' if status < 300 else 'Error'}",
            ]
            text += [f"{k}: {v}" for k, v in extra.items()]
            if answer is not None:
                text += [
                    "Content-Type: application/json; odata.metadata=minimal",
                    "",
                    json.dumps(answer),
                ]
            else:
                text.append("")
            out.append("\r\n".join(text) + "\r\n")
            if status >= 400 and not go_on:
                break
        return Response(
            "".join(out) + f"--{boundary}--\r\n", media_type=f"multipart/mixed; boundary={boundary}"
        )


def _respond(status: int, headers: dict[str, str], body: Any) -> Response:
    if body is None:
        return Response(status_code=status, headers=headers)
    # ASCII with escapes, as JSON allows: a lone surrogate in a name travels as \ud800
    return Response(
        json.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


class Running:
    """The stand-in served by uvicorn over TLS in this event loop; `stop()` and `start()` make
    it unreachable and back on the same port."""

    def __init__(self, service: Dataverse, tmp: Path) -> None:
        self.service = service
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        service.base = self.url
        cert = service.ca.issue_cert("127.0.0.1")
        self.cert_file = tmp / "standin.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(self.cert_file))
        self.ca_file = tmp / "standin-ca.pem"
        service.ca.cert_pem.write_to_path(str(self.ca_file))
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        config = uvicorn.Config(
            self.service.app(),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            ssl_certfile=str(self.cert_file),
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = None


@contextlib.asynccontextmanager
async def dataverse(tmp: Path, *, client_id: str, secret: str) -> AsyncIterator[Running]:
    running = Running(Dataverse(ca=trustme.CA(), client_id=client_id, secret=secret), tmp)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
