"""Contract tests every case store passes: the in-package fake and SQLite."""

import asyncio
import subprocess
import sys
from datetime import timedelta

import pytest

from casebridge.store.memory import MemoryCaseStore
from casebridge.store.sql import SqliteCaseStore
from tests.factories import T0, make_alarm, make_draft

DRAFT = make_draft()


def alarm(state="raised", severity="warning", minute=0, *, episode=None, **over):
    if episode is not None:
        over["episode"] = episode
    return make_alarm(state, severity, minute, **over)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request, tmp_path):
    s = MemoryCaseStore() if request.param == "memory" else SqliteCaseStore(tmp_path / "cases.db")
    await s.start()
    yield s
    await s.aclose()


async def test_the_first_alarm_opens_a_case_with_a_friendly_id(store):
    outcome = await store.record_alarm(alarm(), DRAFT, now=T0)
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
    first = (await store.record_alarm(alarm(), DRAFT, now=T0)).case
    escalated = await store.record_alarm(alarm("updated", "critical", 10, value=1.5), DRAFT, now=T0)
    cleared = await store.record_alarm(alarm("cleared", "critical", 60, value=7.5), DRAFT, now=T0)
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
    await store.record_alarm(alarm(), DRAFT, now=T0)
    await store.record_alarm(alarm("cleared", minute=30), DRAFT, now=T0)
    again = await store.record_alarm(alarm(minute=90, episode="freezing:s:t1:later"), DRAFT, now=T0)
    assert again.result == "appended"
    assert len(await store.list_cases()) == 1


async def test_replaying_an_alarm_changes_nothing(store):
    await store.record_alarm(alarm(), DRAFT, now=T0)
    before = await store.timeline("HV-2026-000001")
    again = await store.record_alarm(alarm(), DRAFT, now=T0 + timedelta(hours=1))
    assert again.result == "duplicate"
    assert await store.timeline("HV-2026-000001") == before


async def test_other_conditions_and_sensors_get_their_own_cases(store):
    await store.record_alarm(alarm(), DRAFT, now=T0)
    await store.record_alarm(alarm(condition="fire", episode="fire:s:t1:x"), DRAFT, now=T0)
    await store.record_alarm(alarm(sensor="t2"), DRAFT, now=T0)
    cases = await store.list_cases()
    assert [(c.id, c.sensor, c.condition) for c in cases] == [
        ("HV-2026-000001", "t1", "freezing"),
        ("HV-2026-000002", "t1", "fire"),
        ("HV-2026-000003", "t2", "freezing"),
    ]


async def test_a_clear_without_a_case_is_ignored(store):
    outcome = await store.record_alarm(alarm("cleared"), DRAFT, now=T0)
    assert (outcome.result, outcome.case) == ("ignored", None)
    assert await store.list_cases() == []


async def test_many_concurrent_raises_make_one_case(store):
    outcomes = await asyncio.gather(
        *(store.record_alarm(alarm(minute=i % 7), DRAFT, now=T0) for i in range(50))
    )
    assert sum(o.result == "opened" for o in outcomes) == 1
    assert len(await store.list_cases()) == 1


async def test_unknown_case_ids_find_nothing(store):
    assert await store.get_case("HV-2026-999999") is None
    assert await store.get_case("not-a-case") is None
    assert await store.timeline("HV-2026-999999") == []


RACER = """
import asyncio, sys
from datetime import UTC, datetime
from pathlib import Path
from casebridge.models import CaseDraft
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
        await store.record_alarm(a, draft, now=t)
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
