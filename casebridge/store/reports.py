"""The case store's reports: every figure computed in SQL from the timeline (the events' kinds
and the statuses they led to), the same statement on SQLite and PostgreSQL but for two
expressions each dialect says its own way (seconds between two timestamps, a text field of
the case's JSON draft).

Per case (cases opened in the period):
- time to acknowledge: from opening to the first event that acknowledged it (acknowledged, or
  started without acknowledging); time to resolve: to the first `resolved`;
- SLA: met when acknowledged by the draft's `sla_due_at` (the priority's response time),
  breached when acknowledged later or not at all by then; neither while it is still running;
- escalations and notification failures: their events; reopened: at least one `reopened`;
- false alarm: the alarm cleared before anyone acknowledged the case.
Median and p90 are interpolated between the nearest ranks (as PostgreSQL's
`percentile_cont`), computed with window functions both dialects have.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, bindparam, text
from sqlalchemy.ext.asyncio import AsyncEngine

from casebridge.store.schema import UtcText

__all__ = ["DIMENSIONS", "ReportQueries"]

#: What a report can be broken down by, as the per-case column it groups on.
DIMENSIONS = ("team", "site", "condition", "month")
_ACKNOWLEDGED = "('acknowledged', 'in_progress')"


def _seconds(dialect: str, later: str, earlier: str) -> str:
    """Seconds from `earlier` to `later` (both RFC 3339 UTC text)."""
    if dialect == "postgresql":
        # through TEXT: a bound value is then sent as the text it is, not as a timestamp
        def stamp(operand: str) -> str:
            return f"CAST(CAST({operand} AS TEXT) AS TIMESTAMPTZ)"

        return f"CAST(EXTRACT(EPOCH FROM ({stamp(later)} - {stamp(earlier)})) AS DOUBLE PRECISION)"
    return f"((julianday({later}) - julianday({earlier})) * 86400.0)"


def _sla_due(dialect: str) -> str:
    if dialect == "postgresql":
        return "(CAST(c.draft AS JSONB) ->> 'sla_due_at')"
    return "json_extract(c.draft, '$.sla_due_at')"


def _percentile(name: str, k: int) -> str:
    """The k-th percentile of `{name}_s` in the group, from its rank `{name}_rank` among
    the group's `{name}_n` non-null values (nulls rank last)."""
    lo_rank = f"(({k} * ({name}_n - 1)) / 100 + 1)"
    lo = f"MAX(CASE WHEN {name}_rank = {lo_rank} THEN {name}_s END)"
    hi = f"MAX(CASE WHEN {name}_rank = {lo_rank} + 1 THEN {name}_s END)"
    frac = f"((({k} * (MAX({name}_n) - 1)) % 100) / 100.0)"
    return f"({lo} + {frac} * (COALESCE({hi}, {lo}) - {lo}))"


def _statement(
    dialect: str,
    by: Sequence[str],
    *,
    sites: bool,
    teams: bool,
    months: int,
) -> str:
    seconds = _seconds
    due = _sla_due(dialect)
    month = (
        "CASE "
        + " ".join(
            f"WHEN c.opened_at >= :m{i} AND c.opened_at < :m{i + 1} THEN :label{i}"
            for i in range(months)
        )
        + " END"
        if months
        else "NULL"
    )
    where = ["c.opened_at >= :start", "c.opened_at < :end"]
    if sites:
        where.append("c.site IN :sites")
    if teams:
        where.append("c.team IN :teams")
    dims = ", ".join(by)
    partition = f"PARTITION BY {dims} " if by else ""
    select_dims = f"{dims}, " if by else ""
    group = f"GROUP BY {dims} ORDER BY {dims}" if by else ""

    def ranked(name: str) -> str:
        return (
            f"ROW_NUMBER() OVER ({partition}ORDER BY "
            f"CASE WHEN {name}_s IS NULL THEN 1 ELSE 0 END, {name}_s) AS {name}_rank, "
            f"COUNT({name}_s) OVER ({partition.strip()}) AS {name}_n"
        )

    # built from this module's constants and the checked breakdown names only; every value
    # from outside (period, sites, teams, months) is a bound parameter
    return f"""
WITH chosen AS (
  SELECT c.number FROM cases c WHERE {" AND ".join(where)}
),
ev AS (
  SELECT case_number,
    MIN(CASE WHEN status IN {_ACKNOWLEDGED} THEN id END) AS ack_id,
    MIN(CASE WHEN status IN {_ACKNOWLEDGED} THEN at END) AS ack_at,
    MIN(CASE WHEN status = 'resolved' THEN at END) AS resolved_at,
    MIN(CASE WHEN kind = 'alarm_cleared' THEN id END) AS cleared_id,
    SUM(CASE WHEN kind = 'escalated' THEN 1 ELSE 0 END) AS escalations,
    SUM(CASE WHEN kind = 'notification_failed' THEN 1 ELSE 0 END) AS failures,
    SUM(CASE WHEN kind = 'reopened' THEN 1 ELSE 0 END) AS reopens
  FROM case_events WHERE case_number IN (SELECT number FROM chosen)
  GROUP BY case_number
),
per_case AS (
  SELECT c.team AS team, c.site AS site, c.condition AS condition, {month} AS month,
    {seconds(dialect, "ev.ack_at", "c.opened_at")} AS ack_s,
    {seconds(dialect, "ev.resolved_at", "c.opened_at")} AS res_s,
    CASE
      WHEN {due} IS NULL THEN NULL
      WHEN ev.ack_at IS NOT NULL THEN
        CASE WHEN {seconds(dialect, due, "ev.ack_at")} >= 0 THEN 1 ELSE 0 END
      WHEN {seconds(dialect, due, ":now")} < 0 THEN 0
      ELSE NULL
    END AS sla,
    COALESCE(ev.escalations, 0) AS escalations,
    COALESCE(ev.failures, 0) AS failures,
    CASE WHEN COALESCE(ev.reopens, 0) > 0 THEN 1 ELSE 0 END AS reopened,
    CASE WHEN ev.cleared_id IS NOT NULL AND (ev.ack_id IS NULL OR ev.cleared_id < ev.ack_id)
      THEN 1 ELSE 0 END AS false_alarm
  FROM cases c LEFT JOIN ev ON ev.case_number = c.number
  WHERE {" AND ".join(where)}
),
ranked AS (
  SELECT per_case.*, {ranked("ack")}, {ranked("res")}
  FROM per_case
)
SELECT {select_dims}COUNT(*) AS opened,
  {_percentile("ack", 50)} AS ack_median,
  {_percentile("ack", 90)} AS ack_p90,
  {_percentile("res", 50)} AS resolve_median,
  {_percentile("res", 90)} AS resolve_p90,
  SUM(CASE WHEN sla = 1 THEN 1 ELSE 0 END) AS sla_met,
  SUM(CASE WHEN sla = 0 THEN 1 ELSE 0 END) AS sla_breached,
  SUM(escalations) AS escalations,
  SUM(failures) AS notification_failures,
  SUM(reopened) AS reopened,
  SUM(false_alarm) AS false_alarms
FROM ranked
{group}
"""  # noqa: S608


class ReportQueries:
    """Report figures (a part of `SqlCaseStore`)."""

    _engine: AsyncEngine

    async def report_rows(
        self,
        *,
        start: datetime,
        end: datetime,
        now: datetime,
        by: Sequence[str],
        sites: Sequence[str] | None = None,
        teams: Sequence[str] | None = None,
        months: Sequence[tuple[str, datetime, datetime]] = (),
    ) -> list[dict[str, Any]]:
        """One row per group of `by` (one row for all when empty) over the cases opened from
        `start` up to `end`; `months`: (label, from, to) for the `month` breakdown."""
        unknown = [b for b in by if b not in DIMENSIONS]
        if unknown:
            raise ValueError(f"no report breakdown {unknown[0]!r} (one of {DIMENSIONS})")
        stamp = UtcText()

        def utc(value: datetime) -> str | None:
            return stamp.process_bind_param(value, None)  # type: ignore[arg-type]

        params: dict[str, Any] = {"start": utc(start), "end": utc(end), "now": utc(now)}
        for i, (label, first, _) in enumerate(months):
            params[f"m{i}"], params[f"label{i}"] = utc(first), label
        if months:
            params[f"m{len(months)}"] = utc(months[-1][2])
        binds: list[BindParameter[Any]] = []
        if sites is not None:
            params["sites"] = list(sites)
            binds.append(bindparam("sites", expanding=True))
        if teams is not None:
            params["teams"] = list(teams)
            binds.append(bindparam("teams", expanding=True))
        async with self._engine.connect() as conn:
            statement = text(
                _statement(
                    conn.dialect.name,
                    by,
                    sites=sites is not None,
                    teams=teams is not None,
                    months=len(months),
                )
            ).bindparams(*binds)
            result = await conn.execute(statement, params)
            return [dict(r._mapping) for r in result]
