"""A hand-made timeline with known report answers, written through the store's own API (the
way husvakt writes it): six cases in January and February 2026 (Stockholm time), and one on
each side of the period.

    case  team/site/condition              opened (UTC)       ack      resolved  SLA (1 h)
    A     facilities/nordskolan/freezing   01-10 02:00        +10 min  +2 h      met
    B     facilities/nordskolan/freezing   01-12 02:00        +90 min  +3 h      breached (2 escalations)
    C     facilities/nordskolan/freezing   01-20 02:00        +20 min  +30 min   met (cleared at +5 min: a false alarm; one failed notification)
    E     facilities/nordskolan/freezing   02-05 08:00        +5 min   +15 min   met (the condition returned: reopened)
    G     facilities/sodra/freezing        12-31 23:30 (Jan 1 00:30 in Stockholm)  started +1 min, resolved +2 min, no SLA
    D     plumbing/sodra/fire              02-03 10:00        never    never     breached (the report runs on March 1)
    out   facilities/nordskolan/freezing   12-31 22:30 (23:30 in Stockholm) and 03-02: not in the period
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from casebridge.models import DeliveryDraft, OpenPlan
from tests.factories import make_alarm, make_draft

TZ = "Europe/Stockholm"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
MIN = timedelta(minutes=1)


def _at(month: int, day: int, hour: int, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


async def _open(store, *, sensor, opened, team="facilities", site="nordskolan",
                condition="freezing", sla=True, plan=None):  # fmt: skip
    alarm = make_alarm(site=site, sensor=sensor, condition=condition, ts=opened, started_at=opened)
    draft = make_draft(team=team, priority="P1", sla_due_at=opened + HOUR if sla else None)
    outcome = await store.record_alarm(
        alarm, draft, plan or OpenPlan(), now=opened, reopen_window=86400.0
    )
    assert outcome.result == "opened", outcome
    return outcome.case.id


async def seed_known_timeline(store) -> None:
    a = await _open(store, sensor="a", opened=_at(1, 10, 2))
    await store.act(a, "acknowledge", actor="eva", now=_at(1, 10, 2, 10))
    await store.act(a, "resolve", actor="eva", now=_at(1, 10, 4))

    b = await _open(store, sensor="b", opened=_at(1, 12, 2))
    for level, minute in ((1, 15), (2, 30)):
        assert await store.escalate(
            b, level=level, next_at=None, deliveries=(), text="nobody answered",
            now=_at(1, 12, 2, minute),
        )  # fmt: skip
    await store.act(b, "acknowledge", actor="jonas", now=_at(1, 12, 3, 30))
    await store.act(b, "start", actor="jonas", now=_at(1, 12, 4))
    await store.act(b, "resolve", actor="jonas", now=_at(1, 12, 5))

    mail = DeliveryDraft(channel="email", recipient="eva@example.org", subject="s", body="b")
    c = await _open(
        store, sensor="c", opened=_at(1, 20, 2), plan=OpenPlan(notify=lambda case: [mail])
    )
    (delivery,) = await store.due_deliveries(_at(1, 20, 2))
    await store.delivery_result(delivery, error="smtp down", now=_at(1, 20, 2, 1), retry_at=None)
    cleared = make_alarm(
        "cleared", site="nordskolan", sensor="c", ts=_at(1, 20, 2, 5), started_at=_at(1, 20, 2)
    )
    await store.record_alarm(
        cleared, make_draft(), OpenPlan(), now=_at(1, 20, 2, 5), reopen_window=86400.0
    )
    await store.act(c, "acknowledge", actor="eva", now=_at(1, 20, 2, 20))
    await store.act(c, "resolve", actor="eva", now=_at(1, 20, 2, 30))

    e = await _open(store, sensor="e", opened=_at(2, 5, 8))
    await store.act(e, "acknowledge", actor="eva", now=_at(2, 5, 8, 5))
    await store.act(e, "resolve", actor="eva", now=_at(2, 5, 8, 15))
    back = make_alarm(
        site="nordskolan", sensor="e", ts=_at(2, 5, 9), started_at=_at(2, 5, 9), episode="e:2"
    )
    outcome = await store.record_alarm(
        back, make_draft(team="facilities"), OpenPlan(), now=_at(2, 5, 9), reopen_window=86400.0
    )
    assert outcome.result == "reopened"
    await store.act(e, "acknowledge", actor="eva", now=_at(2, 5, 9, 30))
    await store.act(e, "resolve", actor="eva", now=_at(2, 5, 10))

    g = await _open(store, sensor="g", site="sodra", opened=_at(12, 31, 23, 30, 2025), sla=False)
    await store.act(g, "start", actor="eva", now=_at(12, 31, 23, 31, 2025))
    await store.act(g, "resolve", actor="eva", now=_at(12, 31, 23, 32, 2025))

    await _open(store, sensor="d", team="plumbing", site="sodra", condition="fire",
                opened=_at(2, 3, 10))  # fmt: skip

    await _open(store, sensor="x", opened=_at(12, 31, 22, 30, 2025))  # Dec 31, 23:30 local
    await _open(store, sensor="y", opened=_at(3, 2, 8))


#: The answers, as `husvakt report --format csv` writes them (times in minutes).
KNOWN_CSV = """\
team,site,condition,opened,ack_median_min,ack_p90_min,resolve_median_min,resolve_p90_min,sla_met,sla_breached,escalations,notification_failures,reopened,false_alarms
facilities,nordskolan,freezing,4,15.0,69.0,75.0,162.0,3,1,2,1,1,1
facilities,sodra,freezing,1,1.0,1.0,2.0,2.0,0,0,0,0,0,0
plumbing,sodra,fire,1,,,,,0,1,0,0,0,0
all,all,all,6,10.0,62.0,30.0,156.0,3,2,2,1,1,1
"""
