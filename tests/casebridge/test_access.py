"""One vocabulary of work lists for the API and the pages: what a list shows is the same whether
it is asked of the store (`narrowing`) or of cases already read (`in_list`), for every role."""

import pytest

from casebridge.access import WORK_LISTS, Access, status_actions
from casebridge.config import TeamConfig
from casebridge.lifecycle import TRANSITIONS
from casebridge.models import OpenPlan, User
from casebridge.store import CaseFilter
from casebridge.store.sql import MemoryCaseStore
from tests.factories import T0, make_alarm, make_draft

TEAMS = (
    TeamConfig(id="facilities", name="F", members=("eva", "jonas")),
    TeamConfig(id="plumbing", name="P", members=("per",)),
)
ROLES = {"eva": "technician", "per": "technician", "disa": "dispatcher", "ian": "integrator"}


@pytest.fixture
async def cases():
    store = MemoryCaseStore()
    await store.start()
    for i, team in enumerate(("facilities", "plumbing", "facilities")):
        await store.record_alarm(
            make_alarm(sensor=f"t{i}"), make_draft(team=team), OpenPlan(), now=T0, reopen_window=0
        )
    for uid in ("eva", "jonas", "per"):
        await store.add_user(User(id=uid, name=uid), now=T0)
    await store.act("HV-2026-000001", "assign", actor="eva", now=T0, assignee="jonas")
    await store.act("HV-2026-000002", "assign", actor="per", now=T0, assignee="per")
    yield store
    await store.aclose()


@pytest.mark.parametrize("uid", ROLES)
async def test_a_work_list_is_the_same_from_the_store_and_from_cases_read(cases, uid):
    who = Access(User(id=uid, name=uid, role=ROLES[uid]), TEAMS)
    everything = await cases.list_cases()
    for work_list in who.work_lists:
        queried = [
            c.id
            for c in await cases.list_cases(CaseFilter(**who.narrowing(work_list)))
            if who.can_read(c)
        ]
        assert queried == [c.id for c in everything if who.in_list(work_list, c)], work_list
    assert ("all" in who.work_lists) == who.sees_everything
    assert who.default_list == ("all" if who.sees_everything else "team")


async def test_a_dispatchers_team_list_is_their_own_teams_and_all_is_everything(cases):
    disa = Access(User(id="disa", name="Disa", role="dispatcher"), TEAMS)
    everything = await cases.list_cases()
    assert [c for c in everything if disa.in_list("team", c)] == []  # in no team
    assert len([c for c in everything if disa.in_list("all", c)]) == 3
    assert WORK_LISTS == ("mine", "team", "team-members", "all")


async def test_the_actions_a_case_offers_are_the_lifecycles(cases):
    case = await cases.get_case("HV-2026-000001")
    assert status_actions(case) == [a for a, (src, _) in TRANSITIONS.items() if "new" in src]
    assert status_actions(case) == ["acknowledge", "start", "resolve"]
