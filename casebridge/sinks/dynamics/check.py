"""`husvakt dynamics check`: the sink's config against the live environment — can we sign in,
does the table have every mapped column and the alternate key, are the mapped option values,
accounts and subjects there, is change tracking on. One line per finding."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from casebridge.models import Case, CaseDraft
from casebridge.sinks import SinkDownError
from casebridge.sinks.dynamics.client import DataverseClient, DataverseError
from casebridge.sinks.dynamics.mapping import Request, entity_for, record

__all__ = ["Finding", "check"]

_PICKLISTS = ("prioritycode", "casetypecode", "caseorigincode")


@dataclass(frozen=True)
class Finding:
    ok: bool
    text: str


def _columns(body: dict[str, Any]) -> Iterator[str]:
    for name in body:
        yield name.split("@", 1)[0]


async def check(client: DataverseClient) -> list[Finding]:
    """Every check, in order; a failure to sign in or reach the service stops there."""
    config = client.config
    entity = entity_for(config)
    out: list[Finding] = []
    try:
        who = await client.send(Request("GET", "WhoAmI"))
        user = who.body.get("UserId") if isinstance(who.body, dict) else None
        out.append(Finding(True, f"signed in to {config.url} as application user {user}"))
        meta = await client.send(
            Request(
                "GET",
                f"EntityDefinitions(LogicalName='{entity.logical}')"
                "?$select=LogicalName,EntitySetName,ChangeTrackingEnabled"
                "&$expand=Attributes($select=LogicalName),Keys($select=KeyAttributes,EntityKeyIndexStatus)",
            )
        )
    except (SinkDownError, DataverseError) as exc:
        return [*out, Finding(False, f"cannot reach or sign in to {config.url}: {exc}")]
    if meta.status == 404 or not isinstance(meta.body, dict):
        return [*out, Finding(False, f"the environment has no table {entity.logical}")]
    attributes = {
        a.get("LogicalName") for a in meta.body.get("Attributes", []) if isinstance(a, dict)
    }
    # a case whose site and condition have every mapped column
    site = next(iter(config.mapping.accounts), "check")
    condition = next(iter(config.mapping.subjects), "freezing")
    sample = record(config, _SAMPLE_CASE.model_copy(update={"site": site, "condition": condition}))
    for column in sorted(set(_columns(sample))):
        known = column in attributes
        out.append(
            Finding(known, f"column {entity.logical}.{column}" + ("" if known else " is missing"))
        )
    keys = [
        k
        for k in meta.body.get("Keys", [])
        if isinstance(k, dict) and k.get("KeyAttributes") == [config.key]
    ]
    if not keys:
        out.append(Finding(False, f"no alternate key on {config.key}: add one (see the README)"))
    elif keys[0].get("EntityKeyIndexStatus") != "Active":
        out.append(
            Finding(
                False,
                f"the alternate key on {config.key} is "
                f"{keys[0].get('EntityKeyIndexStatus')}, not Active yet",
            )
        )
    else:
        out.append(Finding(True, f"alternate key on {config.key} is active"))
    if config.poll > 0:
        tracked = meta.body.get("ChangeTrackingEnabled") is True
        out.append(
            Finding(
                tracked,
                f"change tracking on {entity.logical}"
                + (
                    ""
                    if tracked
                    else " is off: turn on 'Track changes' for the table (or set poll: 0)"
                ),
            )
        )
    out += await _options(client, entity.logical)
    for site, account in sorted(config.mapping.accounts.items()):
        out.append(await _exists(client, "accounts", account, f"account of site {site}"))
    if config.mapping.default_account:
        out.append(
            await _exists(client, "accounts", config.mapping.default_account, "default account")
        )
    for condition, subject in sorted(config.mapping.subjects.items()):
        out.append(await _exists(client, "subjects", subject, f"subject of {condition}"))
    return out


async def _options(client: DataverseClient, logical: str) -> list[Finding]:
    mapping = client.config.mapping
    wanted: dict[str, set[int]] = {
        "prioritycode": set(mapping.priorities.values()),
        "casetypecode": set(mapping.case_types.values()),
        "caseorigincode": set(),
    }
    if mapping.default_case_type is not None:
        wanted["casetypecode"].add(mapping.default_case_type)
    if mapping.origin is not None:
        wanted["caseorigincode"].add(mapping.origin)
    out: list[Finding] = []
    if client.config.create != "incident":
        return out
    for name in _PICKLISTS:
        if not wanted[name]:
            continue
        answer = await client.send(
            Request(
                "GET",
                f"EntityDefinitions(LogicalName='{logical}')/Attributes(LogicalName='{name}')"
                "/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName"
                "&$expand=OptionSet($select=Options)",
            )
        )
        body = answer.body if isinstance(answer.body, dict) else {}
        options = (
            body.get("OptionSet", {}).get("Options", [])
            if isinstance(body.get("OptionSet"), dict)
            else []
        )
        values = {o.get("Value") for o in options if isinstance(o, dict)}
        missing = sorted(v for v in wanted[name] if v not in values)
        out.append(
            Finding(
                not missing,
                f"{name} values {sorted(wanted[name])}"
                + (f": {missing} are not options of {name}" if missing else " exist"),
            )
        )
    return out


async def _exists(client: DataverseClient, set_name: str, guid: str, what: str) -> Finding:
    answer = await client.send(Request("GET", f"{set_name}({guid})?$select={set_name[:-1]}id"))
    if answer.status == 404:
        return Finding(False, f"{what}: no {set_name[:-1]} {guid}")
    return Finding(True, f"{what}: {set_name[:-1]} {guid} exists")


def _sample() -> Case:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    draft = CaseDraft(title="check", team="check", priority="P1", route="check", site_name="check")
    return Case(
        id="HV-2026-000001",
        site="check",
        sensor="check",
        condition="freezing",
        status="new",
        severity="warning",
        rule="check",
        threshold=0.0,
        value=0.0,
        episode="check",
        condition_active=True,
        opened_at=now,
        updated_at=now,
        draft=draft,
    )


_SAMPLE_CASE = _sample()
