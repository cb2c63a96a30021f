"""Photos on cases: what a technician's phone sends is checked by its content, stripped of its
metadata (the GPS position above all), stored with a thumbnail in one transaction with its
timeline event, and served only to those who may see the case — over the API (multipart) and
the plain form of the case page."""

import io
import os
import re

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from casebridge.app import create_app
from casebridge.config import PhotoConfig
from casebridge.models import OpenPlan
from casebridge.photos import prepare_photo
from tests.casebridge.test_api import TEAMS, FixedClock, auth, two_team_store
from tests.casebridge.test_web import PASSWORD, csrf, sign_in
from tests.factories import T0, make_alarm, make_draft

FACILITIES, PLUMBING = "HV-2026-000001", "HV-2026-000002"
LIMITS = PhotoConfig(max_bytes=200_000, per_case=3, max_pixels=4_000_000)


def jpeg(width=400, height=200, *, orientation=None, gps=True, color=(200, 40, 40)) -> bytes:
    """A phone photo: EXIF with the camera, the owner and where it was taken."""
    image = Image.new("RGB", (width, height), color)
    image.paste((20, 20, 220), (0, 0, width // 4, height))  # a blue band on the left
    exif = Image.Exif()
    exif[0x010F] = "SECRETCAM"  # Make
    exif[0x013B] = "Eva Lund"  # Artist
    if orientation:
        exif[0x0112] = orientation
    if gps:
        exif[0x8825] = {1: "N", 2: (59.0, 19.0, 44.5), 3: "E", 4: (18.0, 4.0, 7.2)}
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif, comment=b"taken at Nordskolan")
    return out.getvalue()


def png(width=64, height=64, *, alpha=False) -> bytes:
    image = Image.new(
        "RGBA" if alpha else "RGB", (width, height), (10, 200, 10, 128)[: 4 if alpha else 3]
    )
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
async def served(tmp_path):
    store = await two_team_store(tmp_path / "cases.db", password=PASSWORD)
    app = create_app(store=store, teams=TEAMS, clock=FixedClock(), photos=LIMITS)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://husvakt"
    ) as client:
        yield client, store
    await store.aclose()


async def upload(
    client, case, body, *, user="eva", caption="", name="IMG_0001.jpg", ctype="image/jpeg"
):
    return await client.post(
        f"/api/v1/cases/{case}/photos",
        files={"photo": (name, body, ctype)},
        data={"caption": caption} if caption else None,
        headers=auth(user),
    )


async def nothing_attached(store, case=FACILITIES):
    assert await store.photos(case) == []
    assert [e.kind for e in await store.timeline(case) if e.kind == "photo"] == []


async def a_genuine_alarm_still_opens_a_case(store, sensor):
    """After whatever came before, the store still takes an alarm and opens its case."""
    outcome = await store.record_alarm(
        make_alarm(sensor=sensor, condition="fire", severity="critical"),
        make_draft(team="facilities"),
        OpenPlan(),
        now=T0,
        reopen_window=0,
    )
    assert outcome.result == "opened"


async def test_a_phone_photo_is_stored_upright_without_its_position_or_camera(served):
    client, _ = served
    original = jpeg(400, 200, orientation=6)  # held sideways: EXIF says rotate 90°
    assert b"SECRETCAM" in original
    r = await upload(client, FACILITIES, original, caption="Burst pipe by the boiler")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["event"]["kind"] == "photo"
    assert body["event"]["text"] == "Burst pipe by the boiler"
    assert body["photo"]["content_type"] == "image/jpeg"
    assert (body["photo"]["width"], body["photo"]["height"]) == (200, 400)  # upright
    assert re.fullmatch(r"[A-Za-z0-9_-]{24}", body["photo"]["id"])  # a random name

    r = await client.get(body["url"], headers=auth("eva"))
    assert r.status_code == 200
    stored = r.content
    for secret in (b"SECRETCAM", b"Eva Lund", b"Nordskolan", b"Exif", b"GPS"):
        assert secret not in stored
    image = Image.open(io.BytesIO(stored))
    assert not image.getexif()
    assert image.size == (200, 400)
    # the blue band was on the left; turned 90° clockwise it is at the top
    assert image.getpixel((100, 10))[2] > 150
    assert image.getpixel((100, 390))[0] > 150

    thumb = await client.get(body["thumbnail_url"], headers=auth("eva"))
    assert thumb.status_code == 200
    small = Image.open(io.BytesIO(thumb.content))
    assert small.format == "JPEG" and max(small.size) <= 320 and not small.getexif()

    # the timeline and the case's photo list show it
    case = (await client.get(f"/api/v1/cases/{FACILITIES}", headers=auth("eva"))).json()
    assert case["timeline"][-1]["photo"] == body["photo"]["id"]
    listed = (await client.get(f"/api/v1/cases/{FACILITIES}/photos", headers=auth("eva"))).json()
    assert [p["caption"] for p in listed] == ["Burst pipe by the boiler"]


async def test_a_photo_is_served_as_a_file_of_ours_with_the_security_headers(served):
    client, _ = served
    body = (await upload(client, FACILITIES, jpeg(), name='"><script>x.jpg')).json()
    r = await client.get(body["url"], headers=auth("eva"))
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["content-disposition"] == (
        f'inline; filename="{FACILITIES}-{body["photo"]["id"][:8]}.jpg"'
    )
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert "no-store" in r.headers["cache-control"]


async def test_the_type_is_decided_by_the_content_not_the_name(served):
    client, store = served
    # a PNG sent as "photo.jpg", image/jpeg: taken, as the PNG it is (transparency kept)
    r = await upload(client, FACILITIES, png(alpha=True), name="photo.jpg")
    assert r.status_code == 201 and r.json()["photo"]["content_type"] == "image/png"
    # a JPEG sent as "scan.png", application/octet-stream: a JPEG
    r = await upload(client, FACILITIES, jpeg(), name="scan.png", ctype="application/octet-stream")
    assert r.status_code == 201 and r.json()["photo"]["content_type"] == "image/jpeg"
    assert len(await store.photos(FACILITIES)) == 2


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>", 415),
        (b"<html><script>alert(1)</script></html>", 415),
        (b"GIF89a" + b"\x00" * 100, 415),  # a real type, but not one we take
        (jpeg()[:300], 415),  # cut off in the middle
        (b"\xff\xd8\xff\xe0" + b"\x00" * 50, 415),  # a JPEG's first bytes, then nothing
        (b"", 400),
        (b"%PDF-1.7\n", 415),
    ],
    ids=["svg", "html", "gif", "truncated-jpeg", "jpeg-magic-only", "empty", "pdf"],
)
async def test_what_is_not_a_photo_is_refused_and_nothing_is_stored(served, body, status):
    client, store = served
    r = await upload(client, FACILITIES, body)
    assert r.status_code == status, r.text
    assert "detail" in r.json()
    await nothing_attached(store)
    await a_genuine_alarm_still_opens_a_case(store, "t9")


async def test_a_decompression_bomb_is_refused_before_it_is_decoded(served):
    client, store = served
    # 10,000 × 10,000 pixels of one colour: a few hundred kB as a file, 100 MP unpacked
    image = Image.new("1", (10_000, 10_000), 0)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    assert len(out.getvalue()) < LIMITS.max_bytes
    r = await upload(client, FACILITIES, out.getvalue(), name="bomb.png", ctype="image/png")
    assert r.status_code == 413
    assert "10000×10000 pixels" in r.json()["detail"]
    await nothing_attached(store)


def _png_header(width, height):
    """A PNG that says it is `width`×`height` pixels, in 67 bytes (its data never comes)."""
    import struct
    import zlib

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


async def test_a_photo_beyond_pillows_own_bomb_limit_is_too_many_pixels(served):
    """A header claiming 400 MP trips Pillow's own check as the file opens: still the 413 of
    too many pixels, not "not an image"; and a genuine photo still attaches."""
    client, store = served
    r = await upload(client, FACILITIES, _png_header(20_000, 20_000), name="huge.png")
    assert r.status_code == 413, r.text
    assert "pixels" in r.json()["detail"]
    await nothing_attached(store)
    assert (await upload(client, FACILITIES, jpeg())).status_code == 201


async def test_size_and_count_limits(served):
    client, store = served
    big = jpeg(1800, 1800)
    noise = Image.frombytes("RGB", (300, 300), os.urandom(300 * 300 * 3))  # incompressible
    out = io.BytesIO()
    noise.save(out, format="PNG")
    assert len(out.getvalue()) > LIMITS.max_bytes, len(out.getvalue())
    r = await upload(client, FACILITIES, out.getvalue(), ctype="image/png")
    assert r.status_code == 413
    await nothing_attached(store)
    for i in range(LIMITS.per_case):
        assert (await upload(client, FACILITIES, big if i == 0 else jpeg())).status_code == 201
    r = await upload(client, FACILITIES, jpeg())
    assert r.status_code == 409
    assert "already has 3 photos (at most 3)" in r.json()["detail"]
    assert len(await store.photos(FACILITIES)) == LIMITS.per_case
    # a large photo is stored scaled to at most 2560 px; this one is smaller and kept as it is
    assert (await store.photos(FACILITIES))[0].width == 1800


async def test_only_those_who_may_see_the_case_get_its_photos(served):
    client, _ = served
    url = (await upload(client, FACILITIES, jpeg())).json()["url"]
    for user, status in (("eva", 200), ("jonas", 200), ("disa", 200), ("ian", 200), ("per", 404)):
        assert (await client.get(url, headers=auth(user))).status_code == status, user
    assert (await client.get(url)).status_code == 401
    # the right photo id under another case is no photo
    other = url.replace(FACILITIES, PLUMBING)
    assert (await client.get(other, headers=auth("disa"))).status_code == 404
    # who may not act may not attach
    assert (await upload(client, FACILITIES, jpeg(), user="ian")).status_code == 403
    assert (await upload(client, FACILITIES, jpeg(), user="per")).status_code == 404


async def test_the_case_page_takes_a_photo_from_a_plain_form_and_shows_its_thumbnail(served):
    client, store = served
    r = await sign_in(client, "eva")
    assert r.status_code == 303
    page = (await client.get(f"/cases/{FACILITIES}")).text
    assert 'enctype="multipart/form-data"' in page and 'capture="environment"' in page
    token = csrf(page)
    form = {"csrf": token, "caption": "Valve closed"}
    files = {"photo": ("IMG.jpg", jpeg(), "image/jpeg")}
    r = await client.post(f"/cases/{FACILITIES}/photos", data=form, files=files)
    assert r.status_code == 303 and r.headers["location"].startswith(f"/cases/{FACILITIES}")
    (photo,) = await store.photos(FACILITIES)
    page = (await client.get(f"/cases/{FACILITIES}")).text
    assert f'src="/cases/{FACILITIES}/photos/{photo.id}/thumb"' in page
    assert f'href="/cases/{FACILITIES}/photos/{photo.id}"' in page
    thumb = await client.get(f"/cases/{FACILITIES}/photos/{photo.id}/thumb")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    # a foreign form (no or a wrong token) attaches nothing
    bad = {"csrf": "forged", "caption": "x"}
    r = await client.post(f"/cases/{FACILITIES}/photos", data=bad, files=files)
    assert r.status_code == 403
    # not an image: the page says why, and keeps the case as it was
    r = await client.post(
        f"/cases/{FACILITIES}/photos",
        data={"csrf": token},
        files={"photo": ("x.jpg", b"<svg/>", "image/jpeg")},
    )
    assert r.status_code == 415
    assert "That is not a photo husvakt takes (JPEG, PNG or WebP)." in r.text
    assert len(await store.photos(FACILITIES)) == 1


_SEED = jpeg(120, 80)


def _mutated(cut: int, flips: list[tuple[int, int]]) -> bytes:
    data = bytearray(_SEED[: max(cut, 1)] if cut < len(_SEED) else _SEED)
    for at, value in flips:
        data[at % len(data)] = value
    return bytes(data)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.one_of(
        st.binary(max_size=2000),
        st.builds(
            _mutated,
            st.integers(min_value=0, max_value=5000),
            st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 255)), max_size=8),
        ),
    )
)
def test_fuzzed_bytes_are_a_photo_or_a_clear_refusal_never_a_crash(data):
    from casebridge.errors import PhotoError

    try:
        photo = prepare_photo(data, max_pixels=LIMITS.max_pixels)
    except PhotoError as exc:
        status = exc.status
    else:
        status = 201
        assert Image.open(io.BytesIO(photo.data)).format in ("JPEG", "PNG")
        assert not Image.open(io.BytesIO(photo.data)).getexif()
    assert status in (201, 400, 413, 415)


async def test_a_photo_is_removed_for_good_by_who_took_it_or_a_dispatcher(served):
    client, store = served
    url = (await upload(client, FACILITIES, jpeg(), caption="the pupil's face")).json()["url"]
    photo_id = url.rsplit("/", 1)[1]
    # a teammate who did not take it, an integrator and another team may not
    for user, status in (("jonas", 403), ("ian", 403), ("per", 404)):
        r = await client.delete(url, headers=auth(user))
        assert r.status_code == status, (user, r.text)
    assert (await client.get(url, headers=auth("eva"))).status_code == 200
    r = await client.delete(url, params={"reason": "a pupil in the picture"}, headers=auth("eva"))
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "photo_removed" and r.json()["photo"] == photo_id
    assert r.json()["text"] == "photo removed: a pupil in the picture"
    # gone for good: the bytes, the thumbnail, the listing; the timeline says who and why
    assert (await client.get(url, headers=auth("eva"))).status_code == 404
    assert (await client.get(url, params={"thumbnail": 1}, headers=auth("eva"))).status_code == 404
    assert await store.photos(FACILITIES) == []
    assert await store.photo_bytes(FACILITIES, photo_id) is None
    kinds = [e.kind for e in await store.timeline(FACILITIES)]
    assert kinds[-2:] == ["photo", "photo_removed"]
    assert (await client.delete(url, headers=auth("eva"))).status_code == 404  # once
    # a dispatcher may remove anyone's
    other = (await upload(client, FACILITIES, jpeg(), user="jonas")).json()["url"]
    assert (await client.delete(other, headers=auth("disa"))).status_code == 200


async def test_the_case_page_removes_a_photo_and_says_it_was_there(served):
    client, store = served
    r = await sign_in(client, "eva")
    await upload(client, FACILITIES, jpeg(), caption="Meter cupboard")
    (photo,) = await store.photos(FACILITIES)
    page = (await client.get(f"/cases/{FACILITIES}")).text
    form = f'action="/cases/{FACILITIES}/photos/{photo.id}/remove"'
    assert form in page
    token = csrf(page)
    r = await client.post(
        f"/cases/{FACILITIES}/photos/{photo.id}/remove", data={"csrf": token, "reason": "wrong"}
    )
    assert r.status_code == 303
    page = (await client.get(f"/cases/{FACILITIES}")).text
    assert "(photo removed)" in page and f"/photos/{photo.id}/thumb" not in page
    assert "photo removed: wrong" in page
    assert await store.photos(FACILITIES) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("caption", "a\x00b"),
        ("caption", "\x1b[31mred"),
        ("caption", "x" * 501),
        ("reason", "a\x00b"),
        ("reason", "y" * 501),
    ],
    ids=["caption-nul", "caption-escape", "caption-long", "reason-nul", "reason-long"],
)  # fmt: skip
async def test_hostile_captions_and_reasons_are_refused_and_photos_go_on(served, field, value):
    client, store = served
    if field == "caption":
        raw = value.encode("utf-8", "surrogatepass")
        r = await client.post(
            f"/api/v1/cases/{FACILITIES}/photos",
            files={"photo": ("a.jpg", jpeg(), "image/jpeg"), "caption": (None, raw)},
            headers=auth("eva"),
        )
        assert r.status_code == 400, r.text
        await nothing_attached(store)
    else:
        url = (await upload(client, FACILITIES, jpeg())).json()["url"]
        r = await client.delete(url, params={"reason": value}, headers=auth("eva"))
        assert r.status_code in (400, 422), r.text
        assert len(await store.photos(FACILITIES)) == 1  # still there
    # a genuine photo is still taken, and a genuine alarm still opens a case
    assert (await upload(client, FACILITIES, jpeg(), caption="Valve")).status_code == 201
    await a_genuine_alarm_still_opens_a_case(store, "t8")


async def test_a_caption_of_broken_utf8_is_stored_as_text_or_refused_never_a_crash(served):
    """A lone surrogate's bytes (not UTF-8): the form parser reads them as Latin-1; whatever
    is kept is text every store and every answer can encode."""
    client, store = served
    r = await client.post(
        f"/api/v1/cases/{FACILITIES}/photos",
        files={"photo": ("a.jpg", jpeg(), "image/jpeg"), "caption": (None, b"\xed\xa0\x80")},
        headers=auth("eva"),
    )
    assert r.status_code in (201, 400), r.text
    for photo in await store.photos(FACILITIES):
        photo.caption.encode("utf-8")  # encodable: no lone surrogate got in
    await a_genuine_alarm_still_opens_a_case(store, "t7")
