"""Reports a manager can act on: per team, site and condition, how many cases were opened and
how fast they were acknowledged and resolved, the response SLA met or breached, escalations,
notification failures, reopened cases and false alarms — and the trend month by month.

The figures come from the store's SQL (`casebridge/store/reports.py`) over the timeline; this
module chooses the period (whole days in a time zone), and writes the one result as a table,
CSV, JSON or the SVG trend, so the page, its CSV download and `husvakt report` agree.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from casebridge.store import CaseStore

__all__ = [
    "COLUMNS",
    "Period",
    "Report",
    "ReportRow",
    "build_report",
    "parse_period",
    "report_csv",
    "report_json",
    "report_table",
    "report_timezone",
    "row_cells",
    "trend_svg",
]

#: The longest period a report covers (its month breakdown stays a short statement).
MAX_MONTHS = 120
#: The years a report's days may lie in: every such day is a time in UTC and back.
FIRST_YEAR, LAST_YEAR = 1970, 9998
_MONTH = re.compile(r"^\d{4}-\d{2}$")


@dataclass(frozen=True)
class Period:
    """Whole days `first` to `last` (both included) in `tz`."""

    first: date
    last: date
    tz: str

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(), ZoneInfo(self.tz))

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(), ZoneInfo(self.tz))

    def months(self) -> list[tuple[str, datetime, datetime]]:
        """(YYYY-MM, start, end) of each calendar month the period touches, in `tz`."""
        zone = ZoneInfo(self.tz)
        out = []
        year, month = self.first.year, self.first.month
        while date(year, month, 1) <= self.last:
            nyear, nmonth = (year + 1, 1) if month == 12 else (year, month + 1)
            start = datetime(year, month, 1, tzinfo=zone)
            out.append((f"{year:04d}-{month:02d}", start, datetime(nyear, nmonth, 1, tzinfo=zone)))
            year, month = nyear, nmonth
        return out


def _day(text: str, *, last: bool) -> date:
    text = text.strip()
    try:
        if not _MONTH.fullmatch(text):
            return date.fromisoformat(text)
        first = date.fromisoformat(f"{text}-01")  # a month: from its first day, or to its last
        if not last:
            return first
        return date(first.year + first.month // 12, first.month % 12 + 1, 1) - timedelta(days=1)
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not a date (YYYY-MM-DD) or a month (YYYY-MM)") from None


def parse_period(first: str, last: str, tz: str) -> Period:
    """A period as a person gives it: `--from 2026-01 --to 2026-03` is January to March,
    `--from 2026-01-01 --to 2026-01-31` January (both days included)."""
    try:
        ZoneInfo(tz)
    except (ValueError, KeyError) as exc:
        raise ValueError(f"no time zone {tz[:60]!r}") from exc
    period = Period(_day(first, last=False), _day(last, last=True), tz)
    if period.first.year < FIRST_YEAR or period.last.year > LAST_YEAR:
        raise ValueError(f"a report covers days from {FIRST_YEAR} to {LAST_YEAR}")
    if period.last < period.first:
        raise ValueError("the period ends before it begins (--to is before --from)")
    if len(period.months()) > MAX_MONTHS:
        raise ValueError(f"a report covers at most {MAX_MONTHS} months")
    return period


def report_timezone(zones: Sequence[str]) -> str:
    """The time zone a report's days and months are counted in: the sites' own when they
    share one (a municipality's), else UTC."""
    distinct = set(zones)
    return distinct.pop() if len(distinct) == 1 else "UTC"


@dataclass(frozen=True)
class ReportRow:
    """One group's figures; times in seconds (None: no case got that far)."""

    team: str
    site: str
    condition: str
    month: str
    opened: int
    ack_median: float | None
    ack_p90: float | None
    resolve_median: float | None
    resolve_p90: float | None
    sla_met: int
    sla_breached: int
    escalations: int
    notification_failures: int
    reopened: int
    false_alarms: int

    @classmethod
    def of(cls, row: dict[str, Any], **labels: str) -> ReportRow:
        def seconds(key: str) -> float | None:
            value = row.get(key)
            # a clock set back between two events makes no negative duration
            return None if value is None else round(max(float(value), 0.0), 3)

        return cls(
            team=labels.get("team") or str(row.get("team") or ""),
            site=labels.get("site") or str(row.get("site") or ""),
            condition=labels.get("condition") or str(row.get("condition") or ""),
            month=labels.get("month") or str(row.get("month") or ""),
            opened=int(row["opened"] or 0),
            ack_median=seconds("ack_median"),
            ack_p90=seconds("ack_p90"),
            resolve_median=seconds("resolve_median"),
            resolve_p90=seconds("resolve_p90"),
            sla_met=int(row["sla_met"] or 0),
            sla_breached=int(row["sla_breached"] or 0),
            escalations=int(row["escalations"] or 0),
            notification_failures=int(row["notification_failures"] or 0),
            reopened=int(row["reopened"] or 0),
            false_alarms=int(row["false_alarms"] or 0),
        )


@dataclass(frozen=True)
class Report:
    period: Period
    sites: tuple[str, ...] | None
    teams: tuple[str, ...] | None
    #: per team, site and condition
    rows: tuple[ReportRow, ...]
    #: every case of the report
    total: ReportRow
    #: per month of the period (every month, also those without a case)
    trend: tuple[ReportRow, ...]


ALL = "all"


async def build_report(
    store: CaseStore,
    period: Period,
    *,
    now: datetime,
    sites: Sequence[str] | None = None,
    teams: Sequence[str] | None = None,
) -> Report:
    """The report of the cases opened in `period` (narrowed to `sites` and `teams`)."""
    months = period.months()
    common: dict[str, Any] = {
        "start": period.start,
        "end": period.end,
        "now": now,
        "sites": list(sites) if sites else None,
        "teams": list(teams) if teams else None,
    }
    rows = await store.report_rows(by=("team", "site", "condition"), **common)
    (total,) = await store.report_rows(by=(), **common)
    by_month = {
        r["month"]: r for r in await store.report_rows(by=("month",), months=months, **common)
    }
    empty = {"opened": 0, "sla_met": 0, "sla_breached": 0, "escalations": 0}
    empty |= {"notification_failures": 0, "reopened": 0, "false_alarms": 0}
    return Report(
        period=period,
        sites=tuple(sites) if sites else None,
        teams=tuple(teams) if teams else None,
        rows=tuple(ReportRow.of(r) for r in rows),
        total=ReportRow.of(total, team=ALL, site=ALL, condition=ALL, month=ALL),
        trend=tuple(
            ReportRow.of(by_month.get(label, empty), team=ALL, site=ALL, condition=ALL, month=label)
            for label, _, _ in months
        ),
    )


#: The CSV's and the table's columns: times in minutes.
COLUMNS = (
    "team",
    "site",
    "condition",
    "opened",
    "ack_median_min",
    "ack_p90_min",
    "resolve_median_min",
    "resolve_p90_min",
    "sla_met",
    "sla_breached",
    "escalations",
    "notification_failures",
    "reopened",
    "false_alarms",
)


def _minutes(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / 60:.1f}"


def row_cells(row: ReportRow) -> list[str]:
    """A row as the CSV and the page show it."""
    return [
        row.team,
        row.site,
        row.condition,
        str(row.opened),
        _minutes(row.ack_median),
        _minutes(row.ack_p90),
        _minutes(row.resolve_median),
        _minutes(row.resolve_p90),
        str(row.sla_met),
        str(row.sla_breached),
        str(row.escalations),
        str(row.notification_failures),
        str(row.reopened),
        str(row.false_alarms),
    ]


def report_csv(report: Report) -> str:
    """The rows per team, site and condition, then the `all` row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in (*report.rows, report.total):
        writer.writerow(row_cells(row))  # ids are slugs, figures numbers: no formula starts
    return out.getvalue()


def report_json(report: Report) -> dict[str, Any]:
    def plain(row: ReportRow) -> dict[str, Any]:
        data = asdict(row)
        data.pop("month")
        return data

    return {
        "from": report.period.first.isoformat(),
        "to": report.period.last.isoformat(),
        "timezone": report.period.tz,
        "sites": list(report.sites) if report.sites else None,
        "teams": list(report.teams) if report.teams else None,
        "times": "seconds",
        "rows": [plain(r) for r in report.rows],
        "total": plain(report.total),
        "months": [
            {"month": r.month, **{k: v for k, v in plain(r).items() if k not in _LABELS}}
            for r in report.trend
        ],
    }


_LABELS = ("team", "site", "condition")


def report_table(report: Report) -> str:
    """A plain-text table for a terminal."""
    head = ["team", "site", "condition", "opened", "ack p50", "ack p90", "res p50", "res p90"]
    head += ["SLA ok", "SLA late", "escal", "notif fail", "reopened", "false"]
    lines = [head] + [row_cells(r) for r in (*report.rows, report.total)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = [
        "  ".join(
            c.ljust(w) if i < 3 else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    ]
    span = f"{report.period.first} to {report.period.last} ({report.period.tz}); times in minutes"
    return "\n".join([span, *text]) + "\n"


W, H, PAD_L, PAD_R, PAD_T, PAD_B = 640, 220, 36, 12, 12, 28


def trend_svg(report: Report, *, label: str, names: tuple[str, str, str]) -> str:
    """Cases opened per month as bars, the SLA breaches and false alarms among them drawn in
    (role=img with a text alternative; each bar titled with its figures). `names`: what the
    three series are called in the page's language."""
    months = report.trend
    if not months:
        return ""
    top = max([r.opened for r in months] + [1])
    plot_h = H - PAD_T - PAD_B
    width = (W - PAD_L - PAD_R) / len(months)
    parts = [
        f'<svg class="chart bars trend" viewBox="0 0 {W} {H}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg" '
        'preserveAspectRatio="none">',
        f'<rect x="{PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" height="{plot_h}" '
        'class="plot"/>',
        f'<text x="{PAD_L - 6}" y="{PAD_T + 10}" class="axis" text-anchor="end">{top}</text>',
        f'<text x="{PAD_L - 6}" y="{H - PAD_B}" class="axis" text-anchor="end">0</text>',
    ]
    opened, breached, false = names
    for i, r in enumerate(months):
        x = PAD_L + i * width
        title = (
            f"<title>{r.month}: {opened} {r.opened}, {breached} {r.sla_breached}, "
            f"{false} {r.false_alarms}</title>"
        )
        parts.append(f'<g class="month" data-month="{r.month}">{title}')
        # the month's bar, and inside it, side by side, its breaches and its false alarms
        for value, css, left, span in (
            (r.opened, "bar", 1.0, width - 2.0),
            (r.sla_breached, "bar breached", width * 0.15, width * 0.3),
            (r.false_alarms, "bar false", width * 0.55, width * 0.3),
        ):
            h = value / top * plot_h
            parts.append(
                f'<rect x="{x + left:.1f}" y="{PAD_T + plot_h - h:.1f}" '
                f'width="{max(span, 1):.1f}" height="{h:.1f}" class="{css}"/>'
            )
        parts.append("</g>")
    parts.append(
        f'<text x="{PAD_L}" y="{H - 8}" class="axis">{months[0].month}</text>'
        f'<text x="{W - PAD_R}" y="{H - 8}" class="axis" text-anchor="end">'
        f"{months[-1].month}</text>"
    )
    parts.append("</svg>")
    return "".join(parts)
