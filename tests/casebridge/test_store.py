"""Contract tests every case store passes: the in-package fake, SQLite and PostgreSQL."""

import asyncio
import subprocess
import sys
from datetime import timedelta

import pytest

from casebridge.errors import CaseNotFoundError, LifecycleError
from casebridge.models import DeliveryDraft, OpenPlan, User
from casebridge.store import AlarmEntry, CaseFilter
from casebridge.store.sql import MemoryCaseStore, SqlCaseStore, SqliteCaseStore
from tests.factories import T0, make_alarm, make_draft

DRAFT = make_draft()
DAY = 86400.0


def alarm(state="raised", severity="warning", minute=0, *, episode=None, **over):
    if episode is not None:
        over["episode"] = episode
    return make_alarm(state, severity, minute, **over)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request, tmp_path):
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return request.param


@pytest.fixture
async def store(backend, tmp_path):
    if backend == "memory":
        s = MemoryCaseStore()
    elif backend == "sqlite":
        s = SqliteCaseStore(tmp_path / "cases.db")
    else:
        s = SqlCaseStore.from_url(backend)
    await s.start()
    yield s
    await s.aclose()


async def record(store, a, *, draft=DRAFT, plan=None, now=T0, window=DAY):
    return await store.record_alarm(a, draft, plan or OpenPlan(), now=now, reopen_window=window)


async def test_the_first_alarm_opens_a_case_with_a_friendly_id(store):
    outcome = await record(store, alarm())
    assert outcome.result == "opened"
    case = outcome.case
    assert case.id == "HV-2026-000001"
    assert (case.status, case.severity, case.team, case.condition_active) == (
        "new",
        "warning",
        "fm",
        True,
    )
    assert await store.get_case("hv-2026-000001") == case
    assert [e.kind for e in await store.timeline(case.id)] == ["opened", "alarm_raised"]


async def test_later_alarms_append_to_the_open_case(store):
    first = (await record(store, alarm())).case
    escalated = await record(store, alarm("updated", "critical", 10, value=1.5))
    cleared = await record(store, alarm("cleared", "critical", 60, value=7.5))
    assert (escalated.result, cleared.result) == ("appended", "appended")
    cases = await store.list_cases()
    assert len(cases) == 1 and cases[0].id == first.id
    assert (cases[0].severity, cases[0].status, cases[0].condition_active) == (
        "critical",
        "new",
        False,
    )
    kinds = [e.kind for e in await store.timeline(first.id)]
    assert kinds == ["opened", "alarm_raised", "alarm_updated", "alarm_cleared"]


async def test_a_new_episode_while_the_case_is_open_appends(store):
    await record(store, alarm())
    await record(store, alarm("cleared", minute=30))
    again = await record(store, alarm(minute=90, episode="freezing:s:t1:later"))
    assert again.result == "appended"
    assert len(await store.list_cases()) == 1


async def test_replaying_an_alarm_changes_nothing(store):
    await record(store, alarm())
    before = await store.timeline("HV-2026-000001")
    again = await record(store, alarm(), now=T0 + timedelta(hours=1))
    assert again.result == "duplicate"
    assert await store.timeline("HV-2026-000001") == before


async def test_other_conditions_and_sensors_get_their_own_cases(store):
    await record(store, alarm())
    await record(store, alarm(condition="fire"))
    await record(store, alarm(sensor="t2"))
    cases = await store.list_cases()
    assert [(c.id, c.sensor, c.condition) for c in cases] == [
        ("HV-2026-000001", "t1", "freezing"),
        ("HV-2026-000002", "t1", "fire"),
        ("HV-2026-000003", "t2", "freezing"),
    ]
    assert [c.id for c in await store.list_cases(CaseFilter(conditions=["fire"]))] == [
        "HV-2026-000002"
    ]
    assert [c.id for c in await store.list_cases(CaseFilter(sites=["elsewhere"]))] == []


async def test_a_clear_without_a_case_is_ignored(store):
    outcome = await record(store, alarm("cleared"))
    assert (outcome.result, outcome.case) == ("ignored", None)
    assert await store.list_cases() == []


async def test_many_concurrent_raises_make_one_case(store):
    outcomes = await asyncio.gather(*(record(store, alarm(minute=i % 7)) for i in range(40)))
    assert sum(o.result == "opened" for o in outcomes) == 1
    assert len(await store.list_cases()) == 1


async def test_unknown_case_ids_find_nothing(store):
    assert await store.get_case("HV-2026-999999") is None
    assert await store.get_case("not-a-case") is None
    assert await store.timeline("HV-2026-999999") == []
    with pytest.raises(CaseNotFoundError):
        await store.act("HV-2026-999999", "acknowledge", actor="eva", now=T0)


async def test_the_lifecycle_of_a_case(store):
    await store.add_user(User(id="eva", name="Eva"), now=T0)
    case = (await record(store, alarm())).case
    later = T0 + timedelta(minutes=5)
    steps = [
        ("acknowledge", {}, "acknowledged"),
        ("assign", {"assignee": "eva"}, "acknowledged"),
        ("start", {"text": "on my way"}, "in_progress"),
        ("comment", {"text": "valve closed, heater on"}, "in_progress"),
        ("resolve", {}, "resolved"),
        ("close", {}, "closed"),
        ("reopen", {"text": "pipes froze again"}, "reopened"),
    ]
    for action, extra, status in steps:
        case = await store.act(case.id, action, actor="eva", now=later, **extra)
        assert case.status == status, action
    assert case.assignee == "eva"
    kinds = [e.kind for e in await store.timeline(case.id)]
    assert kinds == [
        "opened",
        "alarm_raised",
        "status_changed",
        "assigned",
        "status_changed",
        "comment",
        "status_changed",
        "status_changed",
        "status_changed",
    ]


@pytest.mark.parametrize(
    ("setup", "action", "message"),
    [
        ([], "close", "cannot close HV-2026-000001: it is new"),
        ([], "reopen", "cannot reopen"),
        (["resolve"], "acknowledge", "cannot acknowledge"),
        ([], "comment", "a comment needs text"),
    ],
)
async def test_actions_the_status_does_not_allow_are_refused_and_change_nothing(
    store, setup, action, message
):
    case = (await record(store, alarm())).case
    for step in setup:
        await store.act(case.id, step, actor="eva", now=T0)
    before = await store.timeline(case.id)
    with pytest.raises(LifecycleError, match=message):
        await store.act(case.id, action, actor="eva", now=T0)
    assert await store.timeline(case.id) == before


async def test_assigning_to_an_unknown_user_is_refused(store):
    case = (await record(store, alarm())).case
    with pytest.raises(CaseNotFoundError, match="no user ghost"):
        await store.act(case.id, "assign", actor="eva", now=T0, assignee="ghost")


async def test_a_condition_returning_soon_after_resolution_reopens_the_case(store):
    case = (await record(store, alarm())).case
    await record(store, alarm("cleared", minute=30))
    await store.act(case.id, "resolve", actor="eva", now=T0 + timedelta(hours=1))
    again = await record(store, alarm(minute=120, episode="e2"), now=T0 + timedelta(hours=2))
    assert again.result == "reopened"
    assert again.case.id == case.id and again.case.status == "reopened"
    # ...but after the reopen window, a new case opens.
    await store.act(case.id, "resolve", actor="eva", now=T0 + timedelta(hours=3))
    late = await record(
        store, alarm(minute=60 * 30, episode="e3"), now=T0 + timedelta(hours=30), window=DAY
    )
    assert late.result == "opened" and late.case.id == "HV-2026-000002"


async def test_a_closed_case_is_not_reopened_by_an_alarm(store):
    case = (await record(store, alarm())).case
    await store.act(case.id, "resolve", actor="eva", now=T0)
    await store.act(case.id, "close", actor="eva", now=T0)
    assert (await record(store, alarm(minute=5, episode="e2"))).result == "opened"


async def test_reopening_by_hand_while_another_case_is_open_is_refused(store):
    case = (await record(store, alarm())).case
    await store.act(case.id, "resolve", actor="eva", now=T0)
    await store.act(case.id, "close", actor="eva", now=T0)
    await record(store, alarm(minute=5, episode="e2"))
    with pytest.raises(LifecycleError, match="another case is open"):
        await store.act(case.id, "reopen", actor="eva", now=T0)


async def test_auto_resolving_rules_resolve_on_clear(store):
    auto = make_draft(auto_resolve=True)
    case = (await record(store, alarm(), draft=auto)).case
    await record(store, alarm("cleared", minute=20), draft=auto)
    assert (await store.get_case(case.id)).status == "resolved"


def _mail(case):
    return (
        DeliveryDraft(
            channel="email", recipient="eva@example.org", subject=f"New {case.id}", body="see"
        ),
    )


PLAN = OpenPlan(notify=_mail, next_escalation_at=T0 + timedelta(minutes=15))


async def test_notifications_are_queued_with_the_case_and_retried_until_sent(store):
    case = (await record(store, alarm(), plan=PLAN)).case
    (due,) = await store.due_deliveries(T0)
    assert (due.case_id, due.subject, due.body) == (case.id, f"New {case.id}", "see")
    await store.delivery_result(
        due, error="connection refused", now=T0, retry_at=T0 + timedelta(seconds=30)
    )
    assert await store.due_deliveries(T0 + timedelta(seconds=29)) == []
    (again,) = await store.due_deliveries(T0 + timedelta(seconds=30))
    assert again.attempts == 1
    await store.delivery_result(again, error=None, now=T0 + timedelta(seconds=30), retry_at=None)
    assert await store.due_deliveries(T0 + timedelta(days=1)) == []
    kinds = [e.kind for e in await store.timeline(case.id)]
    assert kinds[-2:] == ["notification_failed", "notification_sent"]


async def test_a_stale_delivery_result_is_not_recorded_twice(store):
    await record(store, alarm(), plan=PLAN)
    (due,) = await store.due_deliveries(T0)
    await store.delivery_result(due, error=None, now=T0, retry_at=None)
    await store.delivery_result(due, error=None, now=T0, retry_at=None)  # a second worker, late
    assert [e.kind for e in await store.timeline("HV-2026-000001")].count("notification_sent") == 1


async def test_unacknowledged_cases_come_due_for_escalation_once(store):
    case = (await record(store, alarm(), plan=PLAN)).case
    assert await store.due_escalations(T0 + timedelta(minutes=14)) == []
    (due,) = await store.due_escalations(T0 + timedelta(minutes=15))
    assert due.id == case.id
    now = T0 + timedelta(minutes=15)
    assert await store.escalate(
        case.id,
        level=1,
        next_at=now + timedelta(minutes=15),
        deliveries=_mail(case),
        text="escalated to jonas",
        now=now,
    )
    assert not await store.escalate(
        case.id, level=1, next_at=None, deliveries=(), text="dup", now=now
    )
    assert len(await store.due_deliveries(now)) == 2
    await store.act(case.id, "acknowledge", actor="jonas", now=now)
    assert await store.due_escalations(now + timedelta(hours=1)) == []


async def test_the_event_feed_follows_every_case_in_order(store):
    await record(store, alarm())
    await record(store, alarm(sensor="t2"))
    await store.act("HV-2026-000001", "acknowledge", actor="eva", now=T0)
    feed = await store.events_after(0)
    assert [(e.case_id, e.kind) for e in feed] == [
        ("HV-2026-000001", "opened"),
        ("HV-2026-000001", "alarm_raised"),
        ("HV-2026-000002", "opened"),
        ("HV-2026-000002", "alarm_raised"),
        ("HV-2026-000001", "status_changed"),
    ]
    assert [e.cursor for e in feed] == sorted(e.cursor for e in feed)
    assert await store.events_after(feed[2].cursor, limit=1) == [feed[3]]
    assert await store.events_after(feed[-1].cursor) == []


async def test_users_and_tokens(store):
    await store.add_user(
        User(id="eva", name="Eva Lind", email="eva@example.org", role="technician"), now=T0
    )
    await store.add_user(
        User(id="eva", name="Eva Lind", email="eva@example.org", role="dispatcher"), now=T0
    )
    await store.add_token("eva", "a" * 64, label="phone", now=T0)
    assert (await store.user_for_token("a" * 64)).role == "dispatcher"
    assert await store.user_for_token("b" * 64) is None
    assert [u.id for u in await store.list_users()] == ["eva"]
    with pytest.raises(CaseNotFoundError):
        await store.add_token("ghost", "c" * 64, label="x", now=T0)


RACER = """
import asyncio, sys
from datetime import UTC, datetime
from pathlib import Path
from casebridge.models import CaseDraft, OpenPlan
from casebridge.store.sql import SqliteCaseStore
from stream.models import Alarm

async def main():
    store = SqliteCaseStore(Path(sys.argv[1]))
    await store.start()
    t = datetime(2026, 1, 15, 2, 0, tzinfo=UTC)
    draft = CaseDraft(title="x", team="fm", priority="P2", route="r", site_name="S")
    sys.stdin.readline()  # start line: both processes go at once
    for i in range(40):
        a = Alarm(episode="e", site="s", sensor="t1", condition="fire", state="raised", severity="critical",
                  value=60.0, threshold=50.0, rule="fire", started_at=t, ts=t.replace(second=i))
        await store.record_alarm(a, draft, OpenPlan(), now=t, reopen_window=86400)
    await store.aclose()

asyncio.run(main())
"""


async def test_two_processes_raising_the_same_alarm_make_one_case(tmp_path):
    db = tmp_path / "cases.db"
    await (init := SqliteCaseStore(db)).start()
    await init.aclose()
    procs = [
        subprocess.Popen([sys.executable, "-c", RACER, str(db)], stdin=subprocess.PIPE)
        for _ in range(2)
    ]
    for p in procs:
        p.stdin.write(b"go\n")
        p.stdin.flush()
    assert [await asyncio.to_thread(p.wait, 60) for p in procs] == [0, 0]
    store = SqliteCaseStore(db)
    cases = await store.list_cases()
    assert len(cases) == 1
    events = await store.timeline(cases[0].id)
    assert [e.kind for e in events].count("alarm_raised") == 40  # each distinct alarm once
    await store.aclose()


@pytest.mark.postgres
async def test_two_processes_on_postgres_make_one_case(postgres_url):
    racer = RACER.replace(
        "SqliteCaseStore(Path(sys.argv[1]))", "SqlCaseStore.from_url(sys.argv[1])"
    ).replace("import SqliteCaseStore", "import SqlCaseStore")
    await (init := SqlCaseStore.from_url(postgres_url)).start()
    await init.aclose()
    procs = [
        subprocess.Popen([sys.executable, "-c", racer, postgres_url], stdin=subprocess.PIPE)
        for _ in range(2)
    ]
    for p in procs:
        p.stdin.write(b"go\n")
        p.stdin.flush()
    assert [await asyncio.to_thread(p.wait, 60) for p in procs] == [0, 0]
    store = SqlCaseStore.from_url(postgres_url)
    cases = await store.list_cases()
    assert len(cases) == 1
    assert [e.kind for e in await store.timeline(cases[0].id)].count("alarm_raised") == 40
    await store.aclose()


async def test_the_migrations_build_exactly_the_declared_schema(store):
    await store.start()  # idempotent: a second start migrates nothing
    assert await store.schema_drift() == []


async def test_two_stores_opening_a_new_database_at_once_both_start(backend, tmp_path):
    if backend == "memory":
        return  # one process's private store: nothing to race with
    make = (
        (lambda: SqliteCaseStore(tmp_path / "new.db"))
        if backend == "sqlite"
        else (lambda: SqlCaseStore.from_url(backend))
    )
    stores = [make() for _ in range(4)]
    await asyncio.gather(*(s.start() for s in stores))
    assert await stores[0].schema_drift() == []
    for s in stores:
        await s.aclose()


def _script(site):
    """A night at one site: raises, escalations, a replayed alarm, an auto-resolving clear and
    the condition's return (a reopen), a clear with no case, on three sensors, interleaved."""
    auto = make_draft(auto_resolve=True)
    steps = []
    for minute, (sensor, state, severity, draft) in enumerate(
        [
            ("t1", "raised", "warning", DRAFT),
            ("t2", "raised", "warning", auto),
            ("t1", "updated", "critical", DRAFT),
            ("t1", "updated", "critical", DRAFT),
            ("t2", "cleared", "warning", auto),
            ("t3", "cleared", "warning", DRAFT),
            ("t2", "raised", "critical", auto),
            ("t1", "cleared", "warning", DRAFT),
        ]
    ):
        episode = f"freezing:{site}:{sensor}:{'later' if minute == 6 else 'start'}"
        a = alarm(state, severity, minute, site=site, sensor=sensor, episode=episode)
        steps.append((a, draft))
    steps.insert(3, steps[2])  # the same alarm again, as a redelivered batch would carry it
    return steps


async def _night(store, site):
    return [
        (c.sensor, c.status, c.severity, [(e.kind, e.text) for e in await store.timeline(c.id)])
        for c in await store.list_cases(CaseFilter(sites=[site]))
    ]


async def test_a_batch_leaves_the_same_cases_and_timelines_as_one_alarm_at_a_time(store):
    one_by_one = [(await record(store, a, draft=d)).result for a, d in _script("a")]
    entries = [AlarmEntry.ready(a, d, OpenPlan()) for a, d in _script("b")]
    batched = [o.result for o in await store.record_alarms(entries, now=T0, reopen_window=DAY)]
    assert batched == one_by_one
    assert one_by_one == [
        "opened", "opened", "appended", "duplicate", "appended",
        "appended", "ignored", "reopened", "appended",
    ]  # fmt: skip
    assert await _night(store, "b") == await _night(store, "a")
    # and the batch once more changes nothing
    before = await _night(store, "b")
    again = await store.record_alarms(entries, now=T0, reopen_window=DAY)
    assert [o.result for o in again].count("duplicate") == 8
    assert await _night(store, "b") == before


async def test_concurrent_batches_from_two_writers_still_make_one_case_per_sensor(backend):
    if backend == "memory":
        return  # one process's private store: nothing to race with
    url = backend if backend != "sqlite" else None
    first = SqlCaseStore.from_url(url) if url else MemoryCaseStore()
    await first.start()
    second = SqlCaseStore.from_url(url) if url else SqliteCaseStore(first.path)
    storm = [
        AlarmEntry.ready(alarm(minute=m, sensor=f"t{s}", value=3.0 - m), DRAFT, OpenPlan())
        for m in range(4)
        for s in range(300)
    ]  # 1,200 alarms: more than one transaction's worth
    try:
        await asyncio.gather(
            first.record_alarms(storm, now=T0, reopen_window=DAY),
            second.record_alarms(storm[::-1], now=T0, reopen_window=DAY),
        )
        cases = await first.list_cases()
        assert len(cases) == 300
        assert len({c.sensor for c in cases}) == 300
        feed = await first.events_after(0, limit=10_000)
        assert sum(e.kind == "alarm_raised" for e in feed) == 1200  # each alarm once
    finally:
        await second.aclose()
        await first.aclose()


# --- readings -----------------------------------------------------------------------------


def kept(sensor="w1", minute=0, value=1.0, **over):
    from casebridge.store import KeptReading

    fields = {"site": "s", "sensor": sensor, "kind": "water", "unit": "l",
              "ts": T0 + timedelta(minutes=minute), "value": value}  # fmt: skip
    return KeptReading(**(fields | over))


async def test_kept_readings_come_back_by_sensor_and_time_and_a_batch_sent_again_adds_nothing(
    store,
):
    rows = [kept("w1", 0, 10.0), kept("w1", 1, 12.5), kept("t1", 0, 3.2, kind="temperature",
                                                           unit="°C")]  # fmt: skip
    await store.keep_readings(rows)
    await store.keep_readings(rows)  # the same batch again (a replayed uplink)
    got = await store.readings_between("s", T0, T0 + timedelta(hours=1))
    assert [(r.sensor, r.value, r.unit, r.source) for r in got] == [
        ("t1", 3.2, "°C", "device"),
        ("w1", 10.0, "l", "device"),
        ("w1", 12.5, "l", "device"),
    ]
    only = await store.readings_between("s", T0, T0 + timedelta(minutes=1), sensors=["w1"])
    assert [r.value for r in only] == [10.0]  # the end is excluded
    assert await store.readings_between("other", T0, T0 + timedelta(hours=1)) == []
    latest = await store.latest_readings("s")
    assert {k: (v.value, v.ts) for k, v in latest.items()} == {
        "w1": (12.5, T0 + timedelta(minutes=1)),
        "t1": (3.2, T0),
    }


async def test_a_reading_by_hand_waits_for_the_rules_once_and_is_kept_with_who_entered_it(store):
    from casebridge.store.readings import DuplicateReadingError

    entered = await store.add_manual_reading(kept("heat-m1", 5, 1234.5, actor="eva"))
    assert entered.id is not None and entered.source == "manual"
    pending = await store.pending_readings()
    assert [(r.id, r.sensor, r.value, r.actor) for r in pending] == [
        (entered.id, "heat-m1", 1234.5, "eva")
    ]
    with pytest.raises(DuplicateReadingError, match="already has a reading by hand"):
        await store.add_manual_reading(kept("heat-m1", 5, 1300.0, actor="jonas"))
    await store.readings_evaluated([entered.id])
    assert await store.pending_readings() == []
    (latest,) = (await store.latest_readings("s")).values()
    assert (latest.value, latest.source, latest.actor) == (1234.5, "manual", "eva")


async def test_old_kept_readings_are_forgotten_but_not_those_the_rules_wait_for(store):
    await store.keep_readings([kept("w1", 0, 1.0), kept("w1", 10, 2.0)])
    await store.add_manual_reading(kept("heat-m1", 0, 5.0, actor="eva"))  # still pending
    assert await store.forget_readings(T0 + timedelta(minutes=5)) == 1
    left = await store.readings_between("s", T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert [(r.sensor, r.value) for r in left] == [("heat-m1", 5.0), ("w1", 2.0)]
