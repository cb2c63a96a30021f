"""Field work and follow-up in a real browser (Debian's Chromium, headless, 360 px wide): a
technician photographs the fix and attaches it to the case from the phone, the thumbnail
appears in the timeline and opens full size; another team's technician cannot fetch the file;
a manager reads the report of a seeded store, and its CSV download is the CLI's."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys

import pytest
from PIL import Image
from playwright.async_api import expect

from casebridge.auth import hash_password
from casebridge.models import User
from casebridge.store.sql import SqliteCaseStore
from tests.casebridge.timeline import KNOWN_CSV, NOW, seed_known_timeline
from tests.web.site import PASSWORD, Server, prepare_site, school_config, sign_in
from tests.web.test_browser import PHONE, browser  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(180)]


def phone_photo() -> bytes:
    image = Image.new("RGB", (1600, 1200), (90, 140, 200))
    exif = Image.Exif()
    exif[0x010F] = "SECRETCAM"
    exif[0x8825] = {1: "N", 2: (59.0, 19.0, 44.5), 3: "E", 4: (18.0, 4.0, 7.2)}
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


@pytest.fixture
async def night(tmp_path):
    config = await prepare_site(tmp_path, "freezing-night")
    server = Server(config)
    try:
        yield server.url
    finally:
        server.stop()


async def test_a_technician_attaches_a_photo_from_the_phone(night, browser, tmp_path):  # noqa: F811
    base = night
    shot = tmp_path / "IMG_0214.jpg"
    shot.write_bytes(phone_photo())
    context = await browser.new_context(viewport=PHONE)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await sign_in(page, base, "eva")
    await page.goto(f"{base}/cases?view=team")
    await page.locator(".case", has_text="Freezing risk").locator("a").click()
    case_url = page.url.split("#")[0]
    picker = page.locator("#photo")
    assert await picker.get_attribute("capture") == "environment"  # the camera, on a phone
    await picker.set_input_files(str(shot))
    await page.get_by_label("Caption").fill("Heating cable on the cellar pipe")
    await page.get_by_role("button", name="Attach photo").click()
    await page.wait_for_url(f"{case_url}*")
    thumb = page.locator("#timeline li.ev-photo img")
    await expect(thumb).to_have_count(1)
    await expect(page.locator("#timeline li.ev-photo")).to_contain_text(
        "Heating cable on the cellar pipe"
    )
    assert await thumb.evaluate("img => img.complete && img.naturalWidth") == 320
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    # a tap shows it full size: the photo without its camera or position
    full_url = await page.locator("#timeline li.ev-photo a").get_attribute("href")
    async with page.expect_response(lambda r: r.url.endswith(full_url)) as answer:
        await page.locator("#timeline li.ev-photo a").click()
    full = await (await answer.value).body()
    assert Image.open(io.BytesIO(full)).size == (1600, 1200)
    assert b"SECRETCAM" not in full and not Image.open(io.BytesIO(full)).getexif()
    assert errors == []

    # the plumbing contractor may not see the facilities team's case, nor its photo
    other = await browser.new_context(viewport=PHONE)
    per = await other.new_page()
    await sign_in(per, base, "per")
    for url in (full_url, full_url + "/thumb"):
        response = await per.request.get(f"{base}{url}")
        assert response.status == 404, url
        assert b"SECRETCAM" not in await response.body()
    # nor anyone signed out
    anonymous = await browser.new_context()
    response = await anonymous.request.get(f"{base}{full_url}", max_redirects=0)
    assert response.status == 303 and "/login" in response.headers["location"]
    for c in (context, other, anonymous):
        await c.close()


async def test_a_photo_is_attached_with_javascript_off(night, browser, tmp_path):  # noqa: F811
    shot = tmp_path / "valve.jpg"
    shot.write_bytes(phone_photo())
    context = await browser.new_context(java_script_enabled=False, viewport=PHONE)
    page = await context.new_page()
    await sign_in(page, night, "jonas")  # in Swedish
    await page.goto(f"{night}/cases?view=team")
    await page.locator(".case a").first.click()
    await page.locator("#photo").set_input_files(str(shot))
    await page.get_by_label("Bildtext").fill("Ventilen stängd")
    await page.get_by_role("button", name="Bifoga foto").click()
    await expect(page.locator("#timeline li.ev-photo")).to_contain_text("Ventilen stängd")
    assert await page.locator("#timeline li.ev-photo img").evaluate("i => i.naturalWidth") == 320
    # not an image: the page says why, in the case's own page, and nothing is attached
    fake = tmp_path / "fake.jpg"
    fake.write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    await page.locator("#photo").set_input_files(str(fake))
    await page.get_by_role("button", name="Bifoga foto").click()
    await expect(page.locator("p.error")).to_contain_text(
        "Det är inte ett foto som husvakt tar emot"
    )
    await expect(page.locator("#timeline li.ev-photo")).to_have_count(1)
    await context.close()


@pytest.fixture
async def seeded(tmp_path):
    """The school config on a store holding only the hand-made timeline, and a dispatcher."""
    db = tmp_path / "cases.db"
    config = school_config(tmp_path, db)
    store = SqliteCaseStore(db)
    await store.start()
    try:
        await seed_known_timeline(store)
        await store.add_user(User(id="kerstin", name="Kerstin", role="dispatcher"), now=NOW)
        await store.set_password("kerstin", hash_password(PASSWORD))
    finally:
        await store.aclose()
    server = Server(config)
    try:
        yield config, server.url
    finally:
        server.stop()


async def test_the_reports_page_on_a_phone_and_its_csv_is_the_clis(seeded, browser, tmp_path):  # noqa: F811
    config, base = seeded
    context = await browser.new_context(viewport=PHONE, accept_downloads=True)
    page = await context.new_page()
    await sign_in(page, base, "kerstin")
    await page.get_by_role("link", name="Reports").click()
    await page.locator("input[name=from]").fill("2026-01-01")
    await page.locator("input[name=to]").fill("2026-02-28")
    await page.get_by_role("button", name="Show").click()
    await page.wait_for_url("**/reports?from=2026-01-01*")
    total = page.locator("#report tfoot tr td")
    await expect(total).to_have_text(
        ["6", "10.0", "62.0", "30.0", "156.0", "3", "2", "2", "1", "1", "1"]
    )
    facilities = page.locator("#report tbody tr").first
    await expect(facilities.locator("td.num")).to_have_text(
        ["4", "15.0", "69.0", "75.0", "162.0", "3", "1", "2", "1", "1", "1"]
    )
    await expect(page.locator("svg.trend g.month")).to_have_count(2)
    await expect(page.locator("#months tbody tr").first).to_contain_text("2026-01")
    # the page fits the phone; the wide table scrolls inside its own box
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    async with page.expect_download() as started:
        await page.locator("#csv").click()
    download = await started.value
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    assert download.suggested_filename == "husvakt-report-2026-01-01-2026-02-28.csv"
    cli = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "husvakt.cli", "report", "--config", str(config),
         "--from", "2026-01-01", "--to", "2026-02-28", "--format", "csv"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert saved.read_text(encoding="utf-8") == cli.stdout == KNOWN_CSV
    await context.close()
