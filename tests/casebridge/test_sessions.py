"""Web sessions and API tokens over real HTTP, on SQLite and PostgreSQL: a cookie is not a bearer
token and the reverse; sessions end when idle, at their absolute limit, when the password is
set or when revoked (and an open live stream ends with them); tokens may expire."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from casebridge.app import create_app
from casebridge.auth import hash_password, hash_token
from casebridge.config import TeamConfig, WebConfig
from casebridge.models import OpenPlan, User
from casebridge.store.sql import SqliteCaseStore
from husvakt.cli import main
from tests.casebridge.served import BACKENDS, serving, store_for
from tests.factories import T0, make_alarm, make_draft

TEAMS = (TeamConfig(id="facilities", name="Facilities", members=("eva",)),)
PASSWORD = "frost-at-0214"
CASE = "HV-2026-000001"
WEB = WebConfig(session_idle=12 * 3600, session_max=7 * 86400)


class Clock:
    """The server's clock, moved by the test."""

    def __init__(self) -> None:
        self.value = T0

    def now(self):
        return self.value

    async def sleep(self, seconds):
        await asyncio.sleep(0)


@pytest.fixture(params=BACKENDS)
async def site(request, tmp_path):
    store = await store_for(request, tmp_path)
    await store.add_user(User(id="eva", name="Eva", role="technician"), now=T0)
    await store.set_password("eva", hash_password(PASSWORD))
    await store.add_token("eva", hash_token("token-eva"), label="phone", now=T0)
    await store.record_alarm(
        make_alarm(), make_draft(team="facilities"), OpenPlan(), now=T0, reopen_window=0
    )
    clock = Clock()
    app = create_app(store=store, teams=TEAMS, clock=clock, web=WEB)
    app.state.husvakt_web = app.state.husvakt_web.__class__(
        **{**app.state.husvakt_web.__dict__, "poll_every": 0.05}
    )
    async with serving(app) as (base, _):
        yield base, store, clock
    await store.aclose()


@contextlib.asynccontextmanager
async def sign_in(base: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser that signed in as eva."""
    async with httpx.AsyncClient(base_url=base) as browser:
        r = await browser.post(
            "/login",
            data={"user": "eva", "password": PASSWORD, "next": "/cases"},
            headers={"Origin": base},
        )
        assert r.status_code == 303 and r.headers["location"] == "/cases", r.text
        yield browser


async def signed_in(browser: httpx.AsyncClient) -> bool:
    r = await browser.get(f"/cases/{CASE}")
    return r.status_code == 200


async def test_a_session_cookie_is_not_a_bearer_token_and_the_reverse(site):
    base, _, _ = site
    async with sign_in(base) as browser:
        cookie = browser.cookies["husvakt_session"]
        async with httpx.AsyncClient(base_url=base) as api:
            r = await api.get("/api/v1/me", headers={"Authorization": f"Bearer {cookie}"})
            assert r.status_code == 401
            r = await api.get("/api/v1/me", headers={"Authorization": "Bearer token-eva"})
            assert r.status_code == 200
        async with httpx.AsyncClient(base_url=base, cookies={"husvakt_session": "token-eva"}) as c:
            r = await c.get(f"/cases/{CASE}")
            assert r.status_code == 303 and r.headers["location"].startswith("/login")


async def test_a_session_ends_when_idle_and_at_its_absolute_limit(site):
    base, _, clock = site
    async with sign_in(base) as browser:
        clock.value += timedelta(hours=11, minutes=59)
        assert await signed_in(browser)  # used within the idle time: still signed in
        clock.value += timedelta(hours=12, seconds=1)
        assert not await signed_in(browser)  # unused for longer than 12 h
    start = clock.value
    async with sign_in(base) as browser:
        while clock.value < start + timedelta(days=7) - timedelta(hours=6):
            clock.value += timedelta(hours=6)
            assert await signed_in(browser)
        clock.value = start + timedelta(days=7)
        assert not await signed_in(browser)  # used all along, but a week is the most


async def test_setting_the_password_or_revoking_signs_out_everywhere(site, tmp_path, backend_url):
    base, store, _ = site
    async with sign_in(base) as phone, sign_in(base) as desk:
        await store.set_password("eva", hash_password("a-new-passphrase"))
        assert not await signed_in(phone)
        assert not await signed_in(desk)
    await store.set_password("eva", hash_password(PASSWORD))
    async with sign_in(base) as phone:
        assert await signed_in(phone)
        code = await asyncio.to_thread(main, ["users", "revoke", "eva", "--sessions", *backend_url])
        assert code == 0
        assert not await signed_in(phone)
    async with httpx.AsyncClient(base_url=base) as api:
        bearer = {"Authorization": "Bearer token-eva"}
        assert (await api.get("/api/v1/me", headers=bearer)).status_code == 200
        code = await asyncio.to_thread(main, ["users", "revoke", "eva", "--token", *backend_url])
        assert code == 0
        assert (await api.get("/api/v1/me", headers=bearer)).status_code == 401


async def test_an_open_live_stream_ends_with_its_session(site):
    base, store, _ = site
    async with sign_in(base) as browser, browser.stream("GET", "/live") as live:
        assert live.status_code == 200
        lines = live.aiter_lines()
        assert await anext(lines) == "retry: 2000"
        await store.revoke("eva", tokens_too=False)
        rest = [line async for line in lines]  # the server ends the stream
        assert "event: signed-out" in rest


async def test_a_token_may_expire(site):
    base, store, clock = site
    await store.add_token(
        "eva", hash_token("short-lived"), label="ci", now=T0, expires_at=T0 + timedelta(days=1)
    )
    async with httpx.AsyncClient(base_url=base) as api:
        bearer = {"Authorization": "Bearer short-lived"}
        assert (await api.get("/api/v1/me", headers=bearer)).status_code == 200
        clock.value = T0 + timedelta(days=1)
        assert (await api.get("/api/v1/me", headers=bearer)).status_code == 401


@pytest.fixture
def backend_url(site, request, tmp_path):
    """How the CLI reaches the same store."""
    _, store, _ = site
    if isinstance(store, SqliteCaseStore):
        return ["--db", str(store.path)]
    config = tmp_path / "site.yaml"
    url = request.getfixturevalue("postgres_url")
    config.write_text(
        f"sites: [{{id: s, name: S}}]\nteams: [{{id: fm, name: FM}}]\n"
        f"routing: [{{id: all, team: fm}}]\ncases: {{url: '{url}'}}\n"
    )
    return ["--config", str(config)]


async def attempt(base: str, password: str, *, user: str = "eva", address: str = "127.0.0.1"):
    """One sign-in from `address` (a loopback address of the test's choosing)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=base, transport=transport) as browser:
        r = await browser.post(
            "/login",
            data={"user": user, "password": password, "next": "/cases"},
            headers={"Origin": base},
        )
    return r.headers["location"]


async def test_password_guessing_is_slowed_down_and_never_locks_the_real_user_out(site):
    base, _, clock = site
    for _ in range(3):  # free
        assert "error=1" in await attempt(base, "guess")
    assert await attempt(base, PASSWORD) == "/cases"  # a success forgets the failures
    for _ in range(4):
        await attempt(base, "guess")
    assert "error=locked" in await attempt(base, PASSWORD)  # the 4th failure costs 1 s
    clock.value += timedelta(seconds=1)
    assert "error=1" in await attempt(base, "guess")  # 5th: 2 s
    clock.value += timedelta(seconds=2)
    assert "error=1" in await attempt(base, "guess")  # 6th: 4 s
    clock.value += timedelta(seconds=3)
    assert "error=locked" in await attempt(base, PASSWORD)
    clock.value += timedelta(seconds=1)
    assert await attempt(base, PASSWORD) == "/cases"
    # a guesser at another address slows itself down, not eva
    for _ in range(12):
        await attempt(base, "guess", address="127.0.0.2")
    assert "error=locked" in await attempt(base, "guess", address="127.0.0.2")
    assert await attempt(base, PASSWORD) == "/cases"


async def test_failures_are_counted_atomically_and_junk_names_grow_nothing(site):
    base, store, _ = site
    names = [f"nobody-{i}" for i in range(15)]
    await asyncio.gather(*(attempt(base, "x", user=n, address="127.0.0.3") for n in names))
    got = await store.sign_in_failures(["addr:127.0.0.3", *(f"user:{n}|127.0.0.3" for n in names)])
    assert list(got) == ["addr:127.0.0.3"]  # one row for the address, none per junk name
    assert got["addr:127.0.0.3"][0] == 15  # fifteen concurrent failures, fifteen counted


async def test_the_session_cookie_is_secure_when_served_over_https_behind_a_proxy(site):
    base, _, _ = site
    form = {"user": "eva", "password": PASSWORD, "next": "/cases"}
    async with httpx.AsyncClient(base_url=base) as browser:
        # the TLS-terminating proxy on this host says how the browser came in
        tls = {"Origin": base.replace("http://", "https://"), "X-Forwarded-Proto": "https"}
        r = await browser.post("/login", data=form, headers=tls)
        assert r.status_code == 303 and r.headers["location"] == "/cases"
        assert "secure" in r.headers["set-cookie"].lower()
        r = await browser.post("/login", data=form, headers={"Origin": base})
        assert "secure" not in r.headers["set-cookie"].lower()  # plain http on loopback


async def test_a_clock_that_jumps_back_locks_nobody_out(site):
    """Failures recorded, then the server's clock goes back a year (a bad NTP step): the real
    user signs in at once rather than waiting for the clock to catch up."""
    base, _, clock = site
    for _ in range(6):
        await attempt(base, "guess")
    assert "error=locked" in await attempt(base, PASSWORD)
    clock.value -= timedelta(days=365)
    assert await attempt(base, PASSWORD) == "/cases"
    clock.value += timedelta(days=365 * 2)  # and forward again: the session rules still hold
    async with sign_in(base) as browser:
        assert await signed_in(browser)


async def test_junk_cookies_and_tokens_are_refused_and_a_genuine_one_still_works(site):
    base, _, _ = site
    async with httpx.AsyncClient(base_url=base) as api:
        for junk in ("x" * 8000, "hv_" + "\u00e9" * 50, "-", "Bearer", "a b c"):
            raw = {"Authorization": f"Bearer {junk}".encode()}  # bytes: UTF-8 as sent by a client
            r = await api.get("/api/v1/me", headers=raw)
            assert r.status_code in (400, 401, 431), (junk[:10], r.status_code)
            r = await api.get(
                f"/cases/{CASE}", headers={"Cookie": f"husvakt_session={junk}".encode()}
            )
            assert r.status_code in (303, 400, 431), (junk[:10], r.status_code)
        r = await api.get("/api/v1/me", headers={"Authorization": "Bearer token-eva"})
        assert r.status_code == 200
    async with sign_in(base) as browser:
        assert await signed_in(browser)
