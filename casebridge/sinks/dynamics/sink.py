"""The Dynamics 365 sink: each changed case made true in Dataverse, and changes made in
Dynamics brought back.

Outward, per case and in order: the record is written by its alternate key (create-only with
`If-None-Match: *` while we know of no record — a 412 means an earlier try made it, and we
update it instead; update-only with `If-Match: *` once we do), its new timeline events become
notes whose ids come from the events, and its state follows husvakt's (`CloseIncident`, or
back to active). Every step can be repeated without doubling anything, so a crash at any point
is repaired by the next round. A storm's new cases go out as `$batch` requests.

Back, on a poll interval: change tracking on the table (`Prefer: odata.track-changes`, then
the delta link kept in the store). A record resolved, reactivated or reassigned by someone in
Dynamics changes the husvakt case with that person as the actor; a change husvakt's lifecycle
does not allow (reassigning a resolved case, say) becomes a comment, so neither side's change
is lost. Our own writes come back too and are recognised by their author (WhoAmI).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from casebridge.errors import CaseBridgeError
from casebridge.models import Case, CaseEvent
from casebridge.sinks import Failed, Mirrored, MirrorJob, Report, SinkDownError
from casebridge.sinks.config import DynamicsSinkConfig, as_guid
from casebridge.sinks.dynamics.client import DataverseClient, DataverseError, Response, entity_id
from casebridge.sinks.dynamics.mapping import (
    DYNAMICS_ACTOR,
    NOTE_KINDS,
    Attachment,
    Request,
    annotation,
    entity_for,
    note_removal,
    reopen,
    resolution,
    upsert,
)
from casebridge.store import CaseStore

__all__ = ["DynamicsSink", "plan"]

log = logging.getLogger("husvakt.casebridge.dynamics")

#: Records per page of change tracking.
PAGE = 500
#: Pages read in one poll (the rest next time: the delta link resumes).
MAX_PAGES = 50
#: The columns change tracking reads besides the ids.
_TRACKED = ("statecode", "statuscode", "_ownerid_value", "_modifiedby_value")
_FORMATTED = 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'
#: statecode of an incident: active, resolved, cancelled
ACTIVE, RESOLVED, CANCELLED = 0, 1, 2


def _text(value: object, limit: int = 200) -> str:
    """Text from a change row, fit for a timeline: printable characters only (no NUL, no
    lone surrogate, no control character), at most `limit`."""
    if not isinstance(value, str):
        return ""
    return "".join(ch for ch in value[: limit * 2] if ch.isprintable())[:limit]


def plan(
    config: DynamicsSinkConfig, case: Case, events: Sequence[CaseEvent], remote_id: str | None
) -> list[Request]:
    """The requests a case's mirror makes when the record is in the state husvakt last
    left it (what `husvakt dynamics explain` shows)."""
    out = [upsert(config, case, "existing" if remote_id else "new")]
    rid = remote_id or "<the new record's id>"
    out += [annotation(config, rid, e) for e in events if _noted(e)]
    if not case.is_open:
        out.append(resolution(config, case, rid, _why(case, events)))
    return out


def _ours(event: CaseEvent) -> bool:
    """Made in husvakt, not brought from Dynamics (which has it already)."""
    return not event.actor.startswith(DYNAMICS_ACTOR)


def _noted(event: CaseEvent) -> bool:
    return event.kind in NOTE_KINDS and _ours(event)


def _why(case: Case, events: Sequence[CaseEvent]) -> str:
    for event in reversed(events):
        if event.kind in ("status_changed", "comment") and event.text:
            return f"{event.actor}: {event.text}"
    return f"{case.status} in husvakt"


class DynamicsSink:
    def __init__(
        self, config: DynamicsSinkConfig, *, store: CaseStore, client: DataverseClient
    ) -> None:
        self.id = config.id
        self.config = config
        self._store = store
        self._client = client
        self._entity = entity_for(config)
        self._me: str | None = None

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- out --------------------------------------------------------------------------------

    async def mirror(self, jobs: Sequence[MirrorJob], report: Report) -> None:
        new = [j for j in jobs if j.task.remote_id is None]
        created: dict[str, str] = {}
        if len(new) > 1:
            try:
                created = await self._create_many(new)
            except SinkDownError:
                raise
            except Exception:  # an unusable batch answer: each goes one by one instead
                log.exception("dynamics: a $batch answer could not be used")
        for job in jobs:
            try:
                result = await self._one(job, created.get(job.task.case.id))
            except SinkDownError:
                raise
            except DataverseError as exc:
                result = Failed(str(exc))
            except Exception as exc:  # one case's surprise must not stall every other case
                log.exception("dynamics: mirroring %s failed", job.task.case.id)
                result = Failed(f"{type(exc).__name__}: {exc}")
            await report(job, result)

    async def _create_many(self, jobs: Sequence[MirrorJob]) -> dict[str, str]:
        """New cases in one `$batch` of create-only writes: case id → record id for those
        created now (the others — already there, refused — go the one-by-one way)."""
        parts = await self._client.batch([upsert(self.config, j.task.case, "new") for j in jobs])
        created: dict[str, str] = {}
        for job, part in zip(jobs, parts, strict=False):
            if part.status == 429:
                continue  # throttled inside the batch: this one goes one by one
            rid = entity_id(part.headers.get("odata-entityid", ""))
            if 200 <= part.status < 300 and rid is not None:
                created[job.task.case.id] = rid
        return created

    async def _one(self, job: MirrorJob, created: str | None) -> Mirrored | Failed:
        case = job.task.case
        remote = created or job.task.remote_id
        state = ACTIVE
        if remote is not None and created is None:
            known = await self._state(remote)
            if known is None:  # deleted in Dynamics since: make it again
                remote = None
            else:
                state = known
        reopened = any(e.kind == "reopened" and _ours(e) for e in job.events)
        if remote is not None and case.is_open and state != ACTIVE and reopened:
            await self._expect(await self._client.send(reopen(self.config, remote)), "reactivate")
            state = ACTIVE
        if remote is None:
            remote = await self._write(case, None)
        elif created is None and state == ACTIVE:
            remote = await self._write(case, remote)
        # else: closed in Dynamics and not yet fetched back: its record is left as Dynamics
        # has it (the poll brings the change to husvakt), only our notes are added
        for event in job.events:
            if event.kind == "photo_removed":
                failed = await self._unattach(case, event)
                if failed is not None:
                    return Failed(failed, remote_id=remote)
            if _noted(event):
                attached = await self._attachment(event)
                note = await self._client.send(annotation(self.config, remote, event, attached))
                if note.status not in (200, 201, 204, 412):
                    return Failed(
                        f"note for event {event.cursor}: HTTP {note.status}", remote_id=remote
                    )
        if not case.is_open and state == ACTIVE:
            await self._expect(
                await self._client.send(
                    resolution(self.config, case, remote, _why(case, job.events))
                ),
                "resolve",
            )
        return Mirrored(remote_id=remote)

    async def _unattach(self, case: Case, removal: CaseEvent) -> str | None:
        """Delete the note that carried a removed photo (None: done, or there was none)."""
        carried = next(
            (
                e
                for e in await self._store.timeline(case.id)
                if e.kind == "photo" and e.photo == removal.photo and _ours(e)
            ),
            None,
        )
        if carried is None:
            return None
        answer = await self._client.send(note_removal(carried))
        if answer.status in (200, 204, 404):
            return None
        return f"deleting the note of the removed photo: HTTP {answer.status}"

    async def _attachment(self, event: CaseEvent) -> Attachment | None:
        """The photo a `photo` event attached, as its note's file."""
        if event.kind != "photo" or event.photo is None:
            return None
        found = await self._store.photo_bytes(event.case_id, event.photo)
        if found is None:
            return None
        info, body = found
        return Attachment(info.filename(event.case_id), info.content_type, body)

    async def _write(self, case: Case, remote: str | None) -> str:
        """Create or update the record by its key; its id."""
        if remote is None:
            answer = await self._client.send(upsert(self.config, case, "new"))
            if answer.status != 412:
                return self._created(answer)
            # an earlier try (or another husvakt) made it: update it
        answer = await self._client.send(upsert(self.config, case, "existing"))
        if answer.status == 404:  # gone since: make it again
            answer = await self._client.send(upsert(self.config, case))
        return self._created(answer)

    def _created(self, answer: Response) -> str:
        if answer.status >= 300:
            raise DataverseError(answer.status, "the record was not written")
        rid = answer.entity_id()
        if rid is None and isinstance(answer.body, dict):
            rid = as_guid(answer.body.get(self._entity.id_column))
        if rid is None:
            raise DataverseError(answer.status, "the response names no record id (OData-EntityId)")
        return rid

    async def _state(self, remote: str) -> int | None:
        answer = await self._client.send(
            Request("GET", f"{self._entity.set_name}({remote})?$select=statecode")
        )
        if answer.status == 404:
            return None
        value = answer.body.get("statecode") if isinstance(answer.body, dict) else None
        if not isinstance(value, int):
            raise DataverseError(answer.status, "the record's statecode is missing")
        return value

    @staticmethod
    async def _expect(answer: Response, what: str) -> None:
        if answer.status >= 300 and answer.status != 404:
            raise DataverseError(answer.status, f"could not {what} the record")

    # --- back -------------------------------------------------------------------------------

    async def whoami(self) -> str:
        """The application user's own systemuser id (its writes are not changes *to* us)."""
        if self._me is None:
            answer = await self._client.send(Request("GET", "WhoAmI"))
            user = answer.body.get("UserId") if isinstance(answer.body, dict) else None
            me = as_guid(user)
            if me is None:
                raise DataverseError(answer.status, "WhoAmI named no user")
            self._me = me
        return self._me

    async def pull(self, now: datetime) -> None:
        """Apply what changed in Dynamics since the last poll to the husvakt cases."""
        me = await self.whoami()
        cursor = await self._store.sink_cursor(self.id)
        prefer = ("odata.track-changes", f"odata.maxpagesize={PAGE}", _FORMATTED)
        if cursor is None:
            columns = ",".join((self._entity.id_column, self.config.key, *_TRACKED))
            answer = await self._client.send(
                Request("GET", f"{self._entity.set_name}?$select={columns}"), prefer=prefer
            )
        else:
            answer = await self._client.follow(cursor, prefer=prefer)
        for _ in range(MAX_PAGES):
            if answer.status == 404 or not isinstance(answer.body, dict):
                # an expired or unknown delta token: start again with a full read
                log.warning("dynamics: change tracking was reset (%s)", answer.status)
                await self._store.set_sink_cursor(self.id, None, now=now)
                return
            rows = answer.body.get("value")
            for row in rows if isinstance(rows, list) else []:
                try:
                    await self._apply(row, me, now)
                except CaseBridgeError as exc:  # e.g. a transition husvakt does not allow
                    log.warning("dynamics: a change could not be applied: %s", exc)
                except Exception:  # one unusable row must not hold up the others
                    log.exception("dynamics: a changed record could not be read")
            nxt = answer.body.get("@odata.nextLink")
            delta = answer.body.get("@odata.deltaLink")
            if isinstance(delta, str):
                await self._store.set_sink_cursor(self.id, delta, now=now)
                return
            if not isinstance(nxt, str):
                return
            answer = await self._client.follow(nxt, prefer=prefer)

    async def _apply(self, row: Any, me: str, now: datetime) -> None:
        if not isinstance(row, dict) or "$deletedEntity" in _text(row.get("@odata.context"), 500):
            return
        rid = as_guid(row.get(self._entity.id_column))
        if rid is None:
            return
        case_id = await self._store.case_for_remote(self.id, rid)
        if case_id is None:
            return  # not one of ours (or not mirrored yet)
        author = as_guid(row.get("_modifiedby_value"))
        if author is None or author == me:
            return
        name = _text(row.get("_modifiedby_value@OData.Community.Display.V1.FormattedValue"), 100)
        actor = f"{DYNAMICS_ACTOR}{name or author}"
        case = await self._store.get_case(case_id)
        if case is None:
            return
        state = row.get("statecode")
        if type(state) is not int:  # JSON true == 1 in Python: a bool is no state
            state = None
        if state in (RESOLVED, CANCELLED) and case.is_open:
            verb = "resolved" if state == RESOLVED else "cancelled"
            case = await self._store.act(
                case.id, "resolve", actor=actor, now=now, text=f"{verb} in Dynamics 365"
            )
        elif state == ACTIVE and case.status in ("resolved", "closed"):
            case = await self._store.act(
                case.id, "reopen", actor=actor, now=now, text="reactivated in Dynamics 365"
            )
        owner = as_guid(row.get("_ownerid_value"))
        user = self.config.mapping.users.get(owner) if owner else None
        if user is None or user == case.assignee:
            return
        if case.is_open:
            await self._store.act(case.id, "assign", actor=actor, now=now, assignee=user)
        else:
            text = f"assigned to {user} in Dynamics 365 (the case is {case.status} here)"
            await self._store.act(case.id, "comment", actor=actor, now=now, text=text)
