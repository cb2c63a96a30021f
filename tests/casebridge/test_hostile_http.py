"""Malformed and hostile requests over real HTTP (uvicorn on a loopback port), on SQLite and on
PostgreSQL: every one is a 4xx with a `detail` (never a 500), and the server answers a genuine
request right after."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable

import httpx
import pytest

from casebridge.app import create_app
from casebridge.auth import hash_password, hash_token
from casebridge.config import TeamConfig
from casebridge.hardening import MAX_BODY
from casebridge.models import OpenPlan, User
from tests.casebridge.served import BACKENDS, serving, store_for
from tests.factories import T0, make_alarm, make_draft

TEAMS = (
    TeamConfig(id="facilities", name="Facilities", members=("eva",)),
    TeamConfig(id="plumbing", name="Plumbing", members=("per",)),
)
CASE = "HV-2026-000001"
PASSWORD = "frost-at-0214"


class Clock:
    def now(self):
        return T0

    async def sleep(self, seconds):
        await asyncio.sleep(seconds)


@pytest.fixture(params=BACKENDS)
async def served(request, tmp_path):
    store = await store_for(request, tmp_path)
    for uid in ("eva", "per"):
        await store.add_user(User(id=uid, name=uid.title(), role="technician"), now=T0)
        await store.add_token(uid, hash_token(f"token-{uid}"), label="test", now=T0)
        await store.set_password(uid, hash_password(PASSWORD))
    await store.record_alarm(
        make_alarm(), make_draft(team="facilities"), OpenPlan(), now=T0, reopen_window=0
    )
    app = create_app(store=store, teams=TEAMS, clock=Clock())
    async with (
        serving(app) as (base, port),
        httpx.AsyncClient(base_url=base, headers={"Authorization": "Bearer token-eva"}) as c,
    ):
        yield c, port
    await store.aclose()


async def still_serves(client):
    """After a bad request, a genuine one is answered."""
    r = await client.get(f"/api/v1/cases/{CASE}")
    assert r.status_code == 200, r.text


BAD_IDS = [
    "HV-2026-2147483648",  # above a 32-bit column
    "HV-2026-99999999999999999999",  # above 2^63
    "HV-2026-" + "9" * 5000,  # thousands of digits
    "HV-٢٠٢٦-٠٠٠٠٠١",  # Arabic-Indic digits, which int() accepts
    "HV-2026-000001%00",  # a NUL
    "HV-2026-%ED%A0%80",  # a lone surrogate, UTF-8 encoded
    "HV-2026-0",
]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_malformed_case_ids_are_404_everywhere(served, bad):
    client, _ = served
    for method, path in (
        ("GET", f"/api/v1/cases/{bad}"),
        ("POST", f"/api/v1/cases/{bad}/acknowledge"),
        ("POST", f"/api/v1/cases/{bad}/comments"),
    ):
        body = {"text": "x"} if path.endswith("comments") else None
        r = await client.request(method, path, json=body)
        assert r.status_code == 404, (path, r.status_code, r.text)
        assert "detail" in r.json()
    await still_serves(client)


@pytest.mark.parametrize("after", ["2147483648", "99999999999999999999999", "-1", "1e3"])
async def test_cursors_out_of_range_are_422(served, after):
    client, _ = served
    r = await client.get("/api/v1/events", params={"after": after})
    assert r.status_code == 422 and "detail" in r.json()
    await still_serves(client)


@pytest.mark.parametrize("text", ["nul\x00byte", "bell\x07", "lone \ud800 surrogate", "x" * 4001])
async def test_text_with_nul_control_characters_or_surrogates_or_too_long_is_refused(served, text):
    client, _ = served

    def post(path: str, body: dict[str, str]) -> Awaitable[httpx.Response]:
        content = json.dumps(body)  # ASCII with escapes: a lone surrogate as a client sends it
        return client.post(path, content=content, headers={"Content-Type": "application/json"})

    for r in (
        await post(f"/api/v1/cases/{CASE}/comments", {"text": text}),
        await post(f"/api/v1/cases/{CASE}/acknowledge", {"comment": text}),
        await post(f"/api/v1/cases/{CASE}/assign", {"user": "eva", "comment": text}),
    ):
        assert r.status_code == 422, (r.status_code, r.text)
        assert "detail" in r.json()
    r = await client.get("/api/v1/cases", params={"site": "nord\x00skolan"})
    assert r.status_code == 422
    await still_serves(client)
    timeline = (await client.get(f"/api/v1/cases/{CASE}")).json()["timeline"]
    assert [e["kind"] for e in timeline] == ["opened", "alarm_raised"]  # nothing written


async def _raw(port: int, request: bytes, *, then: bytes = b"") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
        if then:
            writer.write(then)
            await writer.drain()
    answer = await reader.read(4096)
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    return answer


async def test_a_huge_body_is_refused_before_it_is_read(served):
    client, port = served
    head = (
        f"POST /api/v1/cases/{CASE}/comments HTTP/1.1\r\nHost: x\r\n"
        "Authorization: Bearer token-eva\r\nContent-Type: application/json\r\n"
    )
    declared = (head + "Content-Length: 104857600\r\n\r\n").encode()  # says 100 MB
    assert (await _raw(port, declared, then=b"{" * 1024)).startswith(b"HTTP/1.1 413")
    chunk = b"x" * 16384
    chunked = (head + "Transfer-Encoding: chunked\r\n\r\n").encode()
    body = (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") * (MAX_BODY // len(chunk) + 2)
    assert (await _raw(port, chunked, then=body)).startswith(b"HTTP/1.1 413")
    await still_serves(client)


async def test_the_web_forms_have_the_apis_limits(served):
    client, _ = served
    async with httpx.AsyncClient(base_url=str(client.base_url)) as browser:
        own = str(client.base_url)
        r = await browser.post(
            "/login",
            data={"user": "eva", "password": PASSWORD, "next": "/cases"},
            headers={"Origin": own},
        )
        assert r.status_code == 303
        page = await browser.get(f"/cases/{CASE}")
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        for comment in ("x" * 4001, "nul\x00", "esc\x1b[2J"):
            r = await browser.post(
                f"/cases/{CASE}/act", data={"action": "comment", "csrf": csrf, "comment": comment}
            )
            assert r.status_code == 400, comment
        r = await browser.post(
            f"/cases/{CASE}/act",
            data={"action": "comment", "csrf": csrf, "comment": "checked the valve"},
        )
        assert r.status_code == 303
    await still_serves(client)


async def test_sign_in_from_another_site_is_refused_and_junk_names_are_a_failed_sign_in(served):
    client, _ = served
    own = str(client.base_url)
    async with httpx.AsyncClient(base_url=own) as browser:
        form = {"user": "eva", "password": PASSWORD, "next": "/cases"}
        for headers in (
            {"Origin": "https://evil.example"},
            {},
            {"Referer": "https://evil.example/x"},
        ):
            r = await browser.post("/login", data=form, headers=headers)
            assert r.status_code == 403, headers
            assert "husvakt_session" not in r.cookies
        for user in (b"eva%00", b"x" * 100, b"%ED%A0%80", b"%FF%FE"):
            r = await browser.post(
                "/login",
                content=b"user=" + user + b"&password=x&next=/cases",
                headers={"Origin": own, "Content-Type": "application/x-www-form-urlencoded"},
            )
            assert r.status_code == 303 and "error=1" in r.headers["location"], user
        r = await browser.post("/login", data=form, headers={"Referer": own + "/login"})
        assert r.status_code == 303 and r.headers["location"] == "/cases"


async def test_every_answer_carries_the_security_headers(served):
    client, _ = served
    for path in ("/login", f"/api/v1/cases/{CASE}", "/api/v1/cases/HV-2026-999999"):
        r = await client.get(path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        assert "frame-ancestors 'none'" in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
        assert r.headers["cache-control"] == "no-store", path


async def test_cases_are_assigned_only_within_their_team_and_sites_is_for_dispatchers(served):
    client, _ = served
    r = await client.post(f"/api/v1/cases/{CASE}/assign", json={"user": "per"})
    assert r.status_code == 422 and "not a member of team facilities" in r.json()["detail"]
    r = await client.post(f"/api/v1/cases/{CASE}/assign", json={"user": "eva"})
    assert r.status_code == 200
    own = str(client.base_url)
    async with httpx.AsyncClient(base_url=own) as browser:
        form = {"user": "eva", "password": PASSWORD, "next": "/cases"}
        assert (await browser.post("/login", data=form, headers={"Origin": own})).is_redirect
        page = await browser.get(f"/cases/{CASE}")
        assert 'href="/sites"' not in page.text  # no link to a page that is not theirs
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        r = await browser.post(
            f"/cases/{CASE}/act", data={"action": "assign", "csrf": csrf, "assignee": "per"}
        )
        assert r.status_code == 400
        assert (await browser.get("/sites")).status_code == 404


def test_an_unknown_user_costs_a_sign_in_the_same_work_as_a_known_one(monkeypatch):
    """No quick "no" that would tell which user ids exist: one scrypt either way."""
    import hashlib

    from casebridge.auth import verify_sign_in

    calls = []
    scrypt = hashlib.scrypt

    def counting(*args, **kwargs):
        calls.append(kwargs.get("n"))
        return scrypt(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    assert not verify_sign_in("guess", None)
    assert not verify_sign_in("guess", hash_password("something-else"))
    assert calls[0] == calls[-1] == 2**14 and len(calls) == 3  # unknown, known (+ its hashing)


async def test_photo_uploads_over_http_have_their_own_limit_and_nothing_else_does(served):
    """The larger body an upload may have is for POSTs to a case's photos only; a body past it
    is refused while it streams; a form with more files or fields than a photo has is refused;
    a real photo is taken, on both stores."""
    from casebridge.config import PhotoConfig
    from tests.casebridge.test_photos import jpeg

    client, port = served
    limit = PhotoConfig().max_bytes
    photos = f"/api/v1/cases/{CASE}/photos"
    head = (
        f"POST {photos} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer token-eva\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
    )
    declared = (head + f"Content-Length: {limit * 7}\r\n\r\n").encode()
    assert (await _raw(port, declared, then=b"--b\r\n")).startswith(b"HTTP/1.1 413")
    chunk = b"x" * 65536
    chunked = (head + "Transfer-Encoding: chunked\r\n\r\n").encode()
    part = (
        b'--b\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )
    body = f"{len(part):x}\r\n".encode() + part + b"\r\n"
    body += (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") * (limit // len(chunk) + 3)
    assert (await _raw(port, chunked, then=body)).startswith(b"HTTP/1.1 413")
    # the same 1 MB is too much anywhere else, also under a path that only starts alike
    for path in (f"/api/v1/cases/{CASE}/comments", f"{photos}/x", f"/cases/{CASE}/act"):
        megabyte = head.replace(photos, path) + "Content-Length: 1000000\r\n\r\n"
        answer = await _raw(port, megabyte.encode(), then=b"x" * 65536)
        assert answer.startswith(b"HTTP/1.1 413"), path
    # more than one file, or more fields than caption and csrf: refused before any decoding
    two = [("photo", ("a.jpg", jpeg(), "image/jpeg")), ("photo", ("b.jpg", jpeg(), "image/jpeg"))]
    assert (await client.post(photos, files=two)).status_code == 400
    fields = {f"f{i}": "x" for i in range(10)}
    one = {"photo": ("a.jpg", jpeg(), "image/jpeg")}
    assert (await client.post(photos, files=one, data=fields)).status_code == 400
    no_file = await client.post(photos, data={"caption": "x"}, files={"other": ("a", b"a")})
    assert no_file.status_code == 400
    await still_serves(client)
    r = await client.post(photos, files=one, data={"caption": "Valve"})
    assert r.status_code == 201, r.text
    got = await client.get(r.json()["url"])
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    timeline = (await client.get(f"/api/v1/cases/{CASE}")).json()["timeline"]
    assert [e["kind"] for e in timeline] == ["opened", "alarm_raised", "photo"]


async def test_a_photo_too_large_from_a_browser_is_a_page_that_leads_back(served):
    """A phone's form post over the limit gets a page a person can read (both languages) and
    the way back to the case; the API still gets JSON."""
    from casebridge.config import PhotoConfig

    client, port = served
    limit = PhotoConfig().max_bytes
    head = (
        f"POST /cases/{CASE}/photos HTTP/1.1\r\nHost: x\r\n"
        "Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {limit * 2}\r\n\r\n"
    )
    answer = await _raw(port, head.encode(), then=b"--b\r\n")
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"content-type: text/html; charset=utf-8" in answer.lower()
    page = answer.decode("utf-8", "replace")
    assert "larger than husvakt takes (15 MB)" in page and "större än husvakt tar emot" in page
    assert f'<a href="/cases/{CASE}">Back</a>' in page
    api = head.replace(f"/cases/{CASE}/photos", f"/api/v1/cases/{CASE}/photos").replace(
        "Accept: text/html,application/xhtml+xml,*/*;q=0.8", "Accept: application/json"
    )
    answer = await _raw(port, api.encode(), then=b"--b\r\n")
    assert answer.startswith(b"HTTP/1.1 413") and b'"detail"' in answer
    await still_serves(client)
