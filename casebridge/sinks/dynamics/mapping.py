"""A husvakt case as Dataverse rows: pure functions from a case (and its events) to the JSON
bodies and addresses the Web API takes. No I/O; `husvakt dynamics explain` prints these.

| husvakt | incident column | how |
|---|---|---|
| case id (HV-2026-000123) | the alternate key column (`key`) | upsert address |
| title | `title` | as is |
| site | `customerid_account` | `mapping.accounts[site]`, else `default_account` |
| condition | `subjectid`, `casetypecode` | `mapping.subjects`, `mapping.case_types` |
| priority (P1–P3) | `prioritycode` | `mapping.priorities` (1 high, 2 normal, 3 low) |
| — | `caseorigincode` | `mapping.origin` (700610000: IoT) |
| enrichment, readings, link | `description` | plain text |
| comments, status changes, assignments | notes (`annotations`) on the incident | one per event |
| photos | notes with the photo attached (`documentbody`) | up to `ATTACHMENT_LIMIT` bytes |
| a photo removed | that note deleted, and a note saying who removed it | DELETE |
| resolved / closed | `CloseIncident` with an `incidentresolution` | status 5 (problem solved) |
| reopened | `statecode` 0, `statuscode` 1 | PATCH |
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from typing import Any

from casebridge.models import Case, CaseEvent
from casebridge.people import case_summary
from casebridge.sinks.config import DynamicsSinkConfig
from gateway.models import format_ts

__all__ = [
    "ATTACHMENT_LIMIT",
    "NOTE_KINDS",
    "Attachment",
    "Entity",
    "Request",
    "annotation",
    "annotation_id",
    "entity_for",
    "key_path",
    "note_removal",
    "record",
    "reopen",
    "resolution",
    "upsert",
]

#: Timeline events that become notes on the Dynamics record (the opening alarm is the record
#: itself; alarm updates would bury the notes people write).
NOTE_KINDS = frozenset(
    {
        "comment",
        "status_changed",
        "assigned",
        "escalated",
        "reopened",
        "alarm_cleared",
        "photo",
        "photo_removed",
    }
)
#: Events made by changes that came from Dynamics carry this actor prefix; they are not sent
#: back as notes (Dynamics has them already).
DYNAMICS_ACTOR = "dynamics:"
#: The namespace of the notes' ids: the same event always gets the same note id, so a retry
#: after a crash finds the note it made instead of making a second one.
_NOTES = uuid.UUID("5f0c3b1e-8a57-4c1a-9d53-68757376616b")
#: Dataverse's text columns: title 200, description 2000 (the default maximum), note 100000.
_TITLE = 200
_DESCRIPTION = 2000
_NOTE = 10_000


@dataclass(frozen=True)
class Entity:
    """The table a case becomes: its entity set, logical name and primary id column."""

    set_name: str
    logical: str
    id_column: str
    #: the single-valued navigation property of a note that points at a record of this table
    note_binding: str


INCIDENT = Entity("incidents", "incident", "incidentid", "objectid_incident")
IOT_ALERT = Entity(
    "msdyn_iotalerts", "msdyn_iotalert", "msdyn_iotalertid", "objectid_msdyn_iotalert"
)


def entity_for(config: DynamicsSinkConfig) -> Entity:
    return INCIDENT if config.create == "incident" else IOT_ALERT


@dataclass(frozen=True)
class Request:
    """One Web API request: method, path below the API root, headers and JSON body."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    headers: tuple[tuple[str, str], ...] = ()


def key_path(config: DynamicsSinkConfig, case_id: str) -> str:
    """`incidents(hv_husvaktcaseid='HV-2026-000123')`: the record by its alternate key. Case
    ids are `HV-`, digits and dashes (checked by the store), so nothing needs escaping; the
    quote doubling is there for any other key."""
    quoted = case_id.replace("'", "''")
    return f"{entity_for(config).set_name}({config.key}='{quoted}')"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def description(config: DynamicsSinkConfig, case: Case) -> str:
    lines = [case_summary(case)]
    recent = case.draft.recent[-6:]
    if recent:
        unit = case.draft.unit or ""
        values = ", ".join(f"{format_ts(p.ts)} {p.value:g}{unit}" for p in recent)
        lines.append(f"Recent readings: {values}")
    if config.link_base:
        lines.append(f"In husvakt: {config.link_base.rstrip('/')}/cases/{case.id}")
    return _clip("\n".join(lines), _DESCRIPTION)


def record(config: DynamicsSinkConfig, case: Case) -> dict[str, Any]:
    """The record's columns that husvakt owns (never its state: that changes by actions)."""
    mapping = config.mapping
    account = mapping.accounts.get(case.site, mapping.default_account)
    if config.create == "iotalert":
        body: dict[str, Any] = {
            config.key: case.id,
            "msdyn_description": _clip(case.draft.title, _TITLE),
            "msdyn_alerttime": format_ts(case.opened_at),
            "msdyn_alerttype": 192350000,  # anomaly
            "msdyn_deviceid": f"{case.site}/{case.sensor}",
            "msdyn_alertdata": _clip(description(config, case), _DESCRIPTION),
        }
        if account is not None:
            body["msdyn_customerid_account@odata.bind"] = f"/accounts({account})"
        return body
    body = {
        config.key: case.id,
        "title": _clip(f"{case.draft.title} ({case.id})", _TITLE),
        "description": description(config, case),
    }
    if account is not None:
        body["customerid_account@odata.bind"] = f"/accounts({account})"
    subject = mapping.subjects.get(case.condition)
    if subject is not None:
        body["subjectid@odata.bind"] = f"/subjects({subject})"
    case_type = mapping.case_types.get(case.condition, mapping.default_case_type)
    if case_type is not None:
        body["casetypecode"] = case_type
    priority = mapping.priorities.get(case.draft.priority)
    if priority is not None:
        body["prioritycode"] = priority
    if mapping.origin is not None:
        body["caseorigincode"] = mapping.origin
    return body


def upsert(config: DynamicsSinkConfig, case: Case, when: str | None = None) -> Request:
    """Write the case's record by its alternate key: `when="new"` creates only
    (`If-None-Match: *`, a 412 if it exists), `"existing"` updates only (`If-Match: *`, a 404
    if it does not), None either (a plain upsert)."""
    headers = {"new": (("If-None-Match", "*"),), "existing": (("If-Match", "*"),), None: ()}
    return Request("PATCH", key_path(config, case.id), record(config, case), headers[when])


def annotation_id(case_id: str, event: CaseEvent) -> str:
    return str(uuid.uuid5(_NOTES, f"{case_id}/{event.cursor}"))


#: Dataverse's default largest attachment (the `maxuploadfilesize` setting: 5 MB); a photo
#: above it becomes a note saying so, without the file.
ATTACHMENT_LIMIT = 5 * 1024 * 1024


@dataclass(frozen=True)
class Attachment:
    """A file a note carries (a photo attached to the case)."""

    filename: str
    mimetype: str
    body: bytes


def annotation(
    config: DynamicsSinkConfig,
    remote_id: str,
    event: CaseEvent,
    attachment: Attachment | None = None,
) -> Request:
    """A note on the record for a timeline event, created only if it is not there yet (its
    id comes from the event: a repeat answers 412, which means done); a photo's note carries
    the photo."""
    entity = entity_for(config)
    text = f"{format_ts(event.at)} {event.actor}: {event.text}"
    body: dict[str, Any] = {
        "subject": _clip(f"husvakt: {event.kind.replace('_', ' ')} by {event.actor}", 500),
        f"{entity.note_binding}@odata.bind": f"/{entity.set_name}({remote_id})",
    }
    if attachment is not None and len(attachment.body) <= ATTACHMENT_LIMIT:
        body |= {
            "filename": attachment.filename,
            "mimetype": attachment.mimetype,
            "documentbody": base64.b64encode(attachment.body).decode("ascii"),
        }
    elif attachment is not None:
        text += f" (the photo, {len(attachment.body):,} bytes, is larger than Dynamics takes)"
    body["notetext"] = _clip(text, _NOTE)
    return Request(
        "PATCH",
        f"annotations({annotation_id(event.case_id, event)})",
        body,
        (("If-None-Match", "*"),),
    )


def note_removal(event: CaseEvent) -> Request:
    """Delete the note an event made (a removed photo's: its file must not stay in Dynamics);
    404 means it is gone already."""
    return Request("DELETE", f"annotations({annotation_id(event.case_id, event)})")


def resolution(config: DynamicsSinkConfig, case: Case, remote_id: str, why: str) -> Request:
    """Resolve the record: `CloseIncident` for an incident; an IoT alert is made inactive."""
    if config.create == "iotalert":
        return reopen(config, remote_id, statecode=1, statuscode=2)
    body = {
        "IncidentResolution": {
            "subject": _clip(f"Resolved in husvakt: {why}", _TITLE),
            "description": _clip(why, _DESCRIPTION),
            "incidentid@odata.bind": f"/incidents({remote_id})",
        },
        "Status": 5,  # problem solved
    }
    return Request("POST", "CloseIncident", body)


def reopen(
    config: DynamicsSinkConfig, remote_id: str, *, statecode: int = 0, statuscode: int = 1
) -> Request:
    """Set the record's state (active by default), only if it still exists."""
    set_name = entity_for(config).set_name
    return Request(
        "PATCH",
        f"{set_name}({remote_id})",
        {"statecode": statecode, "statuscode": statuscode},
        (("If-Match", "*"),),
    )
