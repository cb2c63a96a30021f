"""The work lists in a real browser (Debian's Chromium, headless, driven by Playwright):
a technician signs in at 02:14 on a phone, sees the case a replayed night opened, acknowledges
it with one tap and sees the timeline say so; another team's case stays closed to them; new
cases appear without reloading; and everything needed works with JavaScript off."""

from __future__ import annotations

import pytest
from playwright.async_api import async_playwright, expect

from casebridge.store.sql import SqliteCaseStore
from husvakt.assemble import bridge_for
from husvakt.config import load_config
from tests.factories import make_alarm
from tests.web.site import CHROMIUM_ARGS, Server, chromium, prepare_site, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(180)]

PHONE = {"width": 360, "height": 740}


@pytest.fixture
async def site(tmp_path):
    config = await prepare_site(tmp_path, "freezing-night")
    server = Server(config)
    try:
        yield config, server.url
    finally:
        server.stop()


@pytest.fixture
async def browser():
    try:
        path = chromium()
    except Exception as exc:  # noqa: BLE001 - a missing browser fails the test, never skips
        pytest.fail(str(exc))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def test_a_technician_acknowledges_the_replayed_case_on_a_phone(site, browser):
    _, base = site
    context = await browser.new_context(viewport=PHONE)
    page = await context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await sign_in(page, base, "eva")
    await page.goto(f"{base}/cases?view=team")
    case = page.locator(".case", has_text="Freezing risk")
    await expect(case).to_have_count(1)
    await expect(page.locator(".tabs .badge")).to_have_text("1 new, not acknowledged")
    # one-handed on a 360 px screen: nothing wider than the screen
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await case.locator("a").click()
    await expect(page.locator("h1")).to_have_text("Freezing risk")
    await expect(page.locator(".access")).to_contain_text("Key box by the north door")
    await expect(page.locator("svg.chart line.threshold")).to_have_count(1)
    await page.get_by_role("button", name="Acknowledge").click()
    await expect(page.locator("#status")).to_have_text("acknowledged")
    await expect(page.locator("#timeline li").first).to_contain_text("new → acknowledged")
    await expect(page.locator("#timeline li").first).to_contain_text("eva")
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert errors == []


async def test_a_technician_cannot_open_another_teams_case(site, browser):
    _, base = site
    page = await browser.new_page()
    await sign_in(page, base, "per")  # the plumbing contractor
    await page.goto(f"{base}/cases?view=team")
    await expect(page.locator(".case")).to_have_count(0)
    response = await page.goto(f"{base}/cases/HV-2026-000001")
    assert response is not None
    assert response.status == 404  # as if it did not exist
    await expect(page.locator("h1")).to_have_text("No such case.")
    await expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)


async def test_a_new_case_appears_in_the_open_work_list_without_reloading(site, browser):
    config_path, base = site
    page = await browser.new_page()
    await sign_in(page, base, "eva")
    await page.goto(f"{base}/cases?view=team")
    await expect(page.locator("[data-live]")).to_be_visible()  # the script is following
    await expect(page.locator(".case")).to_have_count(1)
    await page.evaluate("window.__same_page = true")  # gone if the page reloads
    config = load_config(config_path)
    store = SqliteCaseStore(config.cases.sqlite)
    await store.start()

    class Clock:
        def now(self):
            return make_alarm().ts

        async def sleep(self, seconds):
            raise AssertionError

    try:
        bridge = bridge_for(config, store=store, clock=Clock())
        await bridge.handle(make_alarm(site="nordskolan", sensor="cellar-t2", rule="freezing"))
    finally:
        await store.aclose()
    await expect(page.locator(".case")).to_have_count(2, timeout=15_000)
    await expect(page.locator(".case", has_text="Cellar store")).to_have_count(1)
    assert await page.evaluate("window.__same_page === true")  # no reload happened


async def test_reading_and_acknowledging_work_with_javascript_off(site, browser):
    _, base = site
    context = await browser.new_context(java_script_enabled=False, viewport=PHONE)
    page = await context.new_page()
    await sign_in(page, base, "jonas")  # in Swedish
    await page.goto(f"{base}/cases?view=team")
    await expect(page.locator(".tabs a[aria-current=page]")).to_contain_text("Mitt lags ärenden")
    await page.locator(".case a").first.click()
    await page.get_by_role("button", name="Kvittera").click()
    await expect(page.locator("#status")).to_have_text("kvitterad")
    await expect(page.locator("#timeline li").first).to_contain_text("jonas")


async def test_a_technician_enters_a_meter_reading_on_the_site_page_on_a_phone(tmp_path, browser):
    config = await prepare_site(tmp_path, "night-flow")
    server = Server(config)
    try:
        context = await browser.new_context(viewport=PHONE)
        page = await context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await sign_in(page, server.url, "per")  # the plumber the night-flow case went to
        await page.goto(f"{server.url}/cases/HV-2026-000001")
        await expect(page.locator("h1")).to_have_text("Water running at night")
        await page.get_by_role("link", name="Nordskolan").click()
        await expect(page.locator("h1")).to_have_text("Nordskolan")
        await expect(page.locator("#sensor-water-m1")).to_contain_text("204 l")  # wrapped
        form = page.locator("form.reading-form")
        await form.get_by_label("Reading").fill("48210,5")
        await form.get_by_role("button", name="Save").click()
        await expect(page.locator(".notice")).to_contain_text("The reading is saved")
        await expect(page.locator("#sensor-heat-m1")).to_contain_text("48210.5 kWh")
        await expect(page.locator("#sensor-heat-m1")).to_contain_text("entered by per")
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        assert errors == []
    finally:
        server.stop()
