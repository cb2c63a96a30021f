"""The case API per role, in-process over ASGI, plus one run of the real server."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys

import httpx
import pytest

from casebridge.app import create_app
from casebridge.auth import hash_password, hash_token
from casebridge.config import TeamConfig
from casebridge.models import OpenPlan, User
from casebridge.store.sql import SqliteCaseStore
from husvakt.broker import free_port
from tests.conftest import wait_for_port
from tests.factories import T0, make_alarm, make_draft

TEAMS = (
    TeamConfig(id="facilities", name="Facilities", members=("eva", "jonas")),
    TeamConfig(id="plumbing", name="Plumbing", members=("per",)),
)
USERS = {
    "eva": "technician",
    "jonas": "technician",
    "per": "technician",
    "disa": "dispatcher",
    "ian": "integrator",
    "ada": "admin",
}


class FixedClock:
    def now(self):
        return T0

    async def sleep(self, seconds):
        await asyncio.sleep(0)


async def two_team_store(path, *, password=None):
    """A SQLite store at `path` with USERS (each with the token `token-ID`, and `password` when
    given), a facilities case (HV-2026-000001) and a plumbing case (HV-2026-000002)."""
    store = SqliteCaseStore(path)
    await store.start()
    for uid, role in USERS.items():
        await store.add_user(User(id=uid, name=uid.title(), role=role), now=T0)
        await store.add_token(uid, hash_token(f"token-{uid}"), label="test", now=T0)
        if password is not None:
            await store.set_password(uid, hash_password(password))
    await store.record_alarm(
        make_alarm(), make_draft(team="facilities"), OpenPlan(), now=T0, reopen_window=0
    )
    await store.record_alarm(
        make_alarm(sensor="t2", condition="fire", severity="critical"),
        make_draft(team="plumbing"),
        OpenPlan(),
        now=T0,
        reopen_window=0,
    )
    return store


@pytest.fixture
async def api(tmp_path):
    store = await two_team_store(tmp_path / "cases.db")
    app = create_app(store=store, teams=TEAMS, clock=FixedClock())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://husvakt"
    ) as client:
        yield client, store
    await store.aclose()


def auth(user):
    return {"Authorization": f"Bearer token-{user}"}


FACILITIES, PLUMBING = "HV-2026-000001", "HV-2026-000002"


async def test_no_or_a_wrong_token_is_401(api):
    client, _ = api
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic ZXZhOng="}):
        r = await client.get("/api/v1/cases", headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"


async def test_a_technician_sees_only_their_teams_cases(api):
    client, _ = api
    r = await client.get("/api/v1/cases", headers=auth("eva"))
    assert r.status_code == 200
    body = r.json()
    assert (body["work_list"], [c["id"] for c in body["cases"]]) == ("team", [FACILITIES])
    # another team's case is answered as if it did not exist
    assert (await client.get(f"/api/v1/cases/{PLUMBING}", headers=auth("eva"))).status_code == 404
    assert (
        await client.post(f"/api/v1/cases/{PLUMBING}/acknowledge", headers=auth("eva"))
    ).status_code == 404
    assert (
        await client.get("/api/v1/cases/HV-2026-000099", headers=auth("eva"))
    ).status_code == 404


async def test_a_dispatcher_sees_every_case_and_filters(api):
    client, _ = api
    r = await client.get("/api/v1/cases", headers=auth("disa"))
    assert [c["id"] for c in r.json()["cases"]] == [FACILITIES, PLUMBING]
    r = await client.get(
        "/api/v1/cases", params={"condition": "fire", "status": "new"}, headers=auth("disa")
    )
    assert [c["id"] for c in r.json()["cases"]] == [PLUMBING]
    r = await client.get("/api/v1/cases", params={"status": "bogus"}, headers=auth("disa"))
    assert r.status_code == 422


async def test_an_integrator_reads_everything_and_changes_nothing(api):
    client, store = api
    assert len((await client.get("/api/v1/cases", headers=auth("ian"))).json()["cases"]) == 2
    before = await store.timeline(FACILITIES)
    for path, body in (
        ("acknowledge", None),
        ("comments", {"text": "hi"}),
        ("assign", {"user": "eva"}),
    ):
        r = await client.post(f"/api/v1/cases/{FACILITIES}/{path}", json=body, headers=auth("ian"))
        assert r.status_code == 403, path
    assert await store.timeline(FACILITIES) == before


async def test_work_lists_mine_team_and_team_members(api):
    client, _ = api
    r = await client.post(
        f"/api/v1/cases/{FACILITIES}/assign", json={"user": "jonas"}, headers=auth("eva")
    )
    assert r.status_code == 200
    lists = {}
    for who in ("eva", "jonas"):
        for name in ("mine", "team", "team-members"):
            r = await client.get("/api/v1/cases", params={"list": name}, headers=auth(who))
            lists[who, name] = [c["id"] for c in r.json()["cases"]]
    assert lists["jonas", "mine"] == [FACILITIES]
    assert lists["eva", "mine"] == []
    assert lists["eva", "team-members"] == [FACILITIES]
    assert lists["jonas", "team-members"] == []
    assert lists["eva", "team"] == lists["jonas", "team"] == [FACILITIES]
    me = (await client.get("/api/v1/me", headers=auth("eva"))).json()
    assert (me["teams"], me["team_members"]) == (["facilities"], ["jonas"])


async def test_acting_on_a_case_updates_its_timeline(api):
    client, _ = api
    r = await client.post(
        f"/api/v1/cases/{FACILITIES}/acknowledge", json={"comment": "on it"}, headers=auth("eva")
    )
    assert r.status_code == 200
    assert r.json()["case"]["status"] == "acknowledged"
    r = await client.post(
        f"/api/v1/cases/{FACILITIES}/comments", json={"text": "heater on"}, headers=auth("eva")
    )
    timeline = r.json()["timeline"]
    assert [(e["kind"], e["actor"]) for e in timeline[-2:]] == [
        ("status_changed", "eva"),
        ("comment", "eva"),
    ]
    assert timeline[-2]["text"] == "new → acknowledged: on it"


async def test_invalid_requests_are_4xx_and_write_nothing(api):
    client, store = api
    before = await store.timeline(FACILITIES)
    cases = [
        ("close", None, 409),  # not resolved yet
        ("explode", None, 422),
        ("assign", {"user": "ghost"}, 422),  # not a member of the case's team
        ("assign", {"user": "per"}, 422),  # a user, but of another team
        ("assign", {}, 422),
        ("comments", {"text": ""}, 422),
        ("comments", {"text": "x", "extra": 1}, 422),
    ]
    for path, body, code in cases:
        r = await client.post(f"/api/v1/cases/{FACILITIES}/{path}", json=body, headers=auth("eva"))
        assert r.status_code == code, (path, r.text)
        assert r.json()["detail"]
    assert await store.timeline(FACILITIES) == before


async def test_the_event_feed_pages_with_a_cursor_and_respects_visibility(api):
    client, _ = api
    r = await client.get("/api/v1/events", params={"after": 0, "limit": 3}, headers=auth("disa"))
    page = r.json()
    assert [e["kind"] for e in page["events"]] == ["opened", "alarm_raised", "opened"]
    r = await client.get("/api/v1/events", params={"after": page["next"]}, headers=auth("disa"))
    assert [e["case_id"] for e in r.json()["events"]] == [PLUMBING]
    r = await client.get("/api/v1/events", params={"after": 0}, headers=auth("eva"))
    assert {e["case_id"] for e in r.json()["events"]} == {FACILITIES}


@pytest.mark.e2e
def test_cases_serve_runs_a_real_server_with_openapi(tmp_path):
    config = tmp_path / "site.yaml"
    config.write_text(
        "sites: [{id: s, name: S}]\n"
        "teams: [{id: fm, name: FM, members: [eva]}]\n"
        "routing: [{id: all, team: fm}]\n"
        f"cases: {{sqlite: {tmp_path / 'cases.db'}}}\n",
        encoding="utf-8",
    )
    cli = [sys.executable, "-m", "husvakt.cli"]
    subprocess.run(
        [*cli, "users", "add", "eva", "--name", "Eva", "--config", str(config)],
        check=True,
        capture_output=True,
    )
    token = subprocess.run(
        [*cli, "users", "token", "eva", "--config", str(config)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    port = free_port()
    server = subprocess.Popen(
        [*cli, "cases", "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port("127.0.0.1", port, proc=server)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/v1/cases").status_code == 401
        r = httpx.get(f"{base}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["teams"] == ["fm"]
        spec = httpx.get(f"{base}/openapi.json").json()
        assert "/api/v1/cases/{case_id}/{action}" in spec["paths"]
        assert httpx.get(f"{base}/docs").status_code == 200
    finally:
        server.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=10)
        if server.poll() is None:
            os.kill(server.pid, signal.SIGKILL)
