"""The web pages without JavaScript: every read and action is a plain page or form."""

import re
from datetime import timedelta

import httpx
import pytest

from casebridge.app import create_app
from casebridge.auth import hash_password
from casebridge.models import OpenPlan, User
from casebridge.store.sql import SqliteCaseStore
from tests.casebridge.test_api import TEAMS, FixedClock
from tests.factories import T0, make_alarm, make_draft

PASSWORD = "correct horse battery"


@pytest.fixture
async def web(tmp_path):
    store = SqliteCaseStore(tmp_path / "cases.db")
    await store.start()
    for uid, role, language in (
        ("eva", "technician", "en"),
        ("jonas", "technician", "sv"),
        ("per", "technician", "en"),
        ("disa", "dispatcher", "en"),
    ):
        await store.add_user(User(id=uid, name=uid.title(), role=role, language=language), now=T0)
        await store.set_password(uid, hash_password(PASSWORD))
    await store.record_alarm(
        make_alarm(),
        make_draft(
            team="facilities",
            access_notes="Key box by the north door",
            recent=[{"ts": T0 - timedelta(minutes=m), "value": 3 + m / 10} for m in range(30)],
        ),
        OpenPlan(),
        now=T0,
        reopen_window=0,
    )
    await store.record_alarm(
        make_alarm(sensor="t2", condition="fire", severity="critical"),
        make_draft(team="plumbing", title="Fire", priority="P1"),
        OpenPlan(),
        now=T0,
        reopen_window=0,
    )
    app = create_app(store=store, teams=TEAMS, clock=FixedClock())
    transport = httpx.ASGITransport(app=app)
    yield lambda: httpx.AsyncClient(transport=transport, base_url="http://husvakt")
    await store.aclose()


async def sign_in(client, user, password=PASSWORD, *, origin="http://husvakt"):
    """The sign-in form as a browser posts it from the sign-in page (with its Origin)."""
    data = {"user": user, "password": password, "next": "/cases"}
    return await client.post("/login", data=data, headers={"Origin": origin})


def csrf(html):
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


async def test_pages_need_a_session_and_a_wrong_password_gets_no_session(web):
    async with web() as client:
        page = await client.get("/cases?view=mine")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fcases%3Fview%3Dmine"
        failed = await sign_in(client, "eva", "wrong password")
        assert "error=1" in failed.headers["location"]
        assert "husvakt_session" not in client.cookies
        login = await client.get(failed.headers["location"])
        assert "Wrong user or password." in login.text


async def test_a_technician_sees_their_teams_case_and_acknowledges_it(web):
    async with web() as client:
        signed = await sign_in(client, "eva")
        assert signed.status_code == 303
        listing = await client.get("/cases?view=team")
        assert "HV-2026-000001" in listing.text
        assert "HV-2026-000002" not in listing.text  # the plumbers' case
        assert re.search(r'class="badge"[^>]*>1<', listing.text)  # one new, unacknowledged
        case = await client.get("/cases/HV-2026-000001")
        assert "Key box by the north door" in case.text
        chart = case.text[case.text.index('<svg class="chart"') :]
        assert 'class="threshold"' in chart  # the threshold is drawn in
        assert chart.count(",") > 30  # a point per reading
        done = await client.post(
            "/cases/HV-2026-000001/act", data={"action": "acknowledge", "csrf": csrf(case.text)}
        )
        assert done.status_code == 303
        after = await client.get("/cases/HV-2026-000001")
        assert 'id="status">acknowledged<' in after.text
        assert "new → acknowledged" in after.text
        listing = await client.get("/cases?view=team")
        assert 'class="badge"' not in listing.text


async def test_another_teams_case_is_refused_and_forged_forms_are_rejected(web):
    async with web() as client:
        await sign_in(client, "eva")
        other = await client.get("/cases/HV-2026-000002")
        missing = await client.get("/cases/HV-2026-000099")
        # another team's case looks exactly like one that does not exist
        assert (other.status_code, other.text) == (404, missing.text)
        forged = await client.post(
            "/cases/HV-2026-000001/act", data={"action": "acknowledge", "csrf": "0" * 32}
        )
        assert forged.status_code == 403


async def test_a_dispatcher_sees_every_case_sorted_by_priority_and_filters_them(web):
    async with web() as client:
        await sign_in(client, "disa")
        listing = await client.get("/cases")  # a dispatcher's default list: all
        # the P1 fire (opened at the same time) comes before the P2 frost
        assert listing.text.index("HV-2026-000002") < listing.text.index("HV-2026-000001")
        by_age = await client.get("/cases?view=all&sort=age")
        assert by_age.text.index("HV-2026-000001") < by_age.text.index("HV-2026-000002")
        critical = await client.get("/cases?view=all&severity=critical")
        assert "HV-2026-000002" in critical.text
        assert "HV-2026-000001" not in critical.text


async def test_pages_speak_the_users_language(web):
    async with web() as client:
        await sign_in(client, "jonas")
        listing = await client.get("/cases?view=team")
        assert "Mitt lags ärenden" in listing.text
        assert '<html lang="sv">' in listing.text
        case = await client.get("/cases/HV-2026-000001")
        assert "Kvittera" in case.text


async def test_signing_out_ends_the_session(web):
    async with web() as client:
        await sign_in(client, "eva")
        session = client.cookies["husvakt_session"]
        page = await client.get("/cases")
        out = await client.post("/logout", data={"csrf": csrf(page.text)})
        assert out.status_code == 303
    async with web() as replayed:
        replayed.cookies.set("husvakt_session", session)
        again = await replayed.get("/cases")
        assert again.status_code == 303  # the old session is gone from the store


async def test_the_site_overview_shows_open_cases_and_gateways_last_contact(tmp_path):
    from casebridge.config import TeamConfig
    from gateway.config import SiteConfig
    from stream.core import GatewayTrack
    from stream.state import SqliteRuleState

    state = SqliteRuleState(tmp_path / "rules.db")
    track = GatewayTrack(site="s", gateway="pi-cellar", contact=T0 - timedelta(minutes=7))
    await state.save([track])
    state.close()
    store = SqliteCaseStore(tmp_path / "cases.db")
    await store.start()
    await store.add_user(User(id="disa", name="Disa", role="dispatcher"), now=T0)
    await store.set_password("disa", hash_password(PASSWORD))
    await store.record_alarm(
        make_alarm(), make_draft(team="facilities"), OpenPlan(), now=T0, reopen_window=0
    )
    app = create_app(
        store=store,
        teams=(TeamConfig(id="facilities", name="F", members=("eva",)),),
        clock=FixedClock(),
        sites=(SiteConfig(id="s", name="Skolan", address="Skolvägen 1"),),
        rule_state=tmp_path / "rules.db",
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://husvakt"
    ) as client:
        await sign_in(client, "disa")
        page = await client.get("/sites")
    await store.aclose()
    assert "Skolan" in page.text
    assert "1 open cases" in page.text
    assert "pi-cellar (last contact 7 min ago)" in page.text
    assert "/cases/HV-2026-000001" in page.text


async def test_a_sites_own_condition_reads_in_the_users_language_with_its_unit(tmp_path):
    from stream.conditions import Vocabulary
    from stream.config import parse_rule

    damp = parse_rule(
        {"id": "damp-cellar", "condition": "damp", "kind": "humidity", "above": 75,
         "clear": 70, "title": {"en": "Damp cellar", "sv": "Fukt i källaren"}}
    )  # fmt: skip
    store = SqliteCaseStore(tmp_path / "cases.db")
    await store.start()
    await store.add_user(User(id="jonas", name="Jonas", role="technician", language="sv"), now=T0)
    await store.set_password("jonas", hash_password(PASSWORD))
    await store.record_alarm(
        make_alarm(sensor="h1", condition="damp", value=79.0, threshold=75.0, rule="damp-cellar"),
        make_draft(team="facilities", title="Damp cellar — Cellar, S (h1)", unit="%"),
        OpenPlan(),
        now=T0,
        reopen_window=0,
    )
    app = create_app(store=store, teams=TEAMS, clock=FixedClock(), conditions=Vocabulary([damp]))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://husvakt") as client:
            await sign_in(client, "jonas")
            work = await client.get("/cases?view=team")
            assert '<span class="what">Fukt i källaren</span>' in work.text
            assert '<option value="damp" >Fukt i källaren</option>' in work.text  # the filter
            case_id = re.search(r'href="/cases/(HV-[0-9-]+)"', work.text).group(1)
            page = await client.get(f"/cases/{case_id}")
            assert "<h1>Fukt i källaren</h1>" in page.text
            assert "79.0 %</h2>" in page.text
            await store.record_alarm(
                make_alarm(sensor="w1", condition="leak", value=1.0, threshold=0.5, rule="leak"),
                make_draft(
                    team="facilities", title="Water leak — Boiler room, S (w1)", unit="bool"
                ),
                OpenPlan(),
                now=T0,
                reopen_window=0,
            )
            work = await client.get("/cases?view=team")
            assert '<span class="what">Leak</span>' in work.text  # no title given: its id
            leak = re.findall(r'href="/cases/(HV-[0-9-]+)"', work.text)
            page = await client.get(f"/cases/{max(leak)}")
            assert ": på</h2>" in page.text  # an on/off sensor's value is its state
    finally:
        await store.aclose()
