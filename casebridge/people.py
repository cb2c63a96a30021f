"""Pure duty logic: who is on call, who is next when nobody acknowledges, what they are sent."""

from __future__ import annotations

import json
from datetime import datetime

from casebridge.config import NotifyConfig, TeamConfig
from casebridge.models import Case, DeliveryDraft, User
from gateway.models import format_ts

__all__ = ["case_summary", "deliveries_for", "escalation_target", "on_call"]


def on_call(team: TeamConfig, now: datetime) -> str | None:
    """The member on call at `now`: the rotation's current shift, else the first member."""
    if team.on_call is not None:
        elapsed = (now - team.on_call.start).total_seconds()
        shift = int(elapsed // team.on_call.shift) if team.on_call.shift else 0
        return team.on_call.rotation[shift % len(team.on_call.rotation)]
    return team.members[0] if team.members else None


def escalation_target(team: TeamConfig, level: int) -> str | None:
    """Who escalation `level` (1 = first escalation) goes to, or None when the chain is done."""
    chain = team.escalation.chain
    return chain[level - 1] if 1 <= level <= len(chain) else None


def case_summary(case: Case) -> str:
    """The case in a few lines of plain text: what, how bad, where, how to get in."""
    d = case.draft
    where = ", ".join(p for p in (d.site_name, d.building_name, d.room_name or d.room) if p)
    lines = [
        f"{case.id}: {d.title}",
        f"Severity {case.severity}, priority {d.priority}; last value {case.value:.1f}",
        f"Where: {where}" + (f" (floor {d.floor})" if d.floor else ""),
        f"Address: {d.address or '-'}",
        f"Access: {d.access_notes or '-'}",
        f"Contact: {d.contact or '-'}",
        f"Asset: {d.asset or '-'} (sensor {case.sensor} at {case.site})",
    ]
    if d.sla_due_at is not None:
        lines.append(f"Respond by: {format_ts(d.sla_due_at)}")
    return "\n".join(lines)


def deliveries_for(
    case: Case, *, user: User | None, team: TeamConfig, notify: NotifyConfig, reason: str
) -> tuple[DeliveryDraft, ...]:
    """An e-mail to `user` (when e-mail is configured and they have an address) and the team's
    webhook, describing `case`. Nothing here sends: the outbox does, with retries."""
    link = f"{notify.base_url.rstrip('/')}/cases/{case.id}"
    text = case_summary(case)
    out: list[DeliveryDraft] = []
    if user is not None and user.email and notify.smtp is not None:
        prefix = "ESCALATED: " if reason.startswith("escalat") else ""
        out.append(
            DeliveryDraft(
                channel="email",
                recipient=user.email,
                subject=f"[husvakt {case.draft.priority}] {prefix}{case.draft.title} — {case.id}",
                body=f"{text}\n\nAcknowledge: {link}\n",
                reason=reason,
            )
        )
    if team.webhook is not None:
        payload = {
            "event": reason,
            "case": case.model_dump(mode="json"),
            "notify": user.id if user else None,
            "link": link,
        }
        out.append(
            DeliveryDraft(
                channel="webhook",
                recipient=team.webhook.url,
                subject=f"{reason} {case.id}",
                body=json.dumps(payload, ensure_ascii=False, sort_keys=True),
                reason=reason,
            )
        )
    return tuple(out)
