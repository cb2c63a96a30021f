"""How cases look on a terminal and as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence

from casebridge.models import Case
from gateway.models import format_ts

__all__ = ["cases_json", "cases_table", "for_terminal"]

#: Characters a terminal would act on rather than show (C0 but tab and newline, DEL, C1 — ESC
#: and CSI start control sequences) and lone surrogates (unprintable): shown as `\uXXXX`, which
#: is also how JSON writes them, so JSON output stays valid and means the same.
_UNSAFE = {
    code: f"\\u{code:04x}"
    for code in (*range(32), *range(127, 160), *range(0xD800, 0xE000))
    if chr(code) not in "\t\n"
}


def for_terminal(text: str) -> str:
    """`text` with nothing in it that could move the cursor, recolour, retitle or clear the
    terminal it is printed on (stored text comes from sensors, configs and people)."""
    return text.translate(_UNSAFE)


_COLUMNS = (
    "case id",
    "site",
    "room",
    "sensor",
    "condition",
    "severity",
    "status",
    "team",
    "opened at",
)


def _row(case: Case) -> tuple[str, ...]:
    room = case.draft.room_name or case.draft.room or "-"
    return (
        case.id,
        case.site,
        room,
        case.sensor,
        case.condition,
        case.severity,
        case.status,
        case.team,
        format_ts(case.opened_at.replace(microsecond=0)),
    )


def cases_table(cases: Sequence[Case]) -> str:
    """A plain aligned table (no colour codes, so it pastes into a ticket or an e-mail)."""
    if not cases:
        return "(no cases)"
    rows = [_COLUMNS, *(_row(c) for c in cases)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cases_json(cases: Sequence[Case]) -> str:
    return json.dumps([c.model_dump(mode="json") for c in cases], ensure_ascii=False, indent=2)
