"""A site with cases that a replayed scenario opened, served by `husvakt cases serve`, and a
headless Chromium (Debian's) driven by Playwright — for the browser tests and the screenshots."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

from casebridge.auth import hash_password
from casebridge.store.sql import SqliteCaseStore
from husvakt.broker import free_port
from husvakt.config import load_config
from husvakt.replay import replay_path
from tests.services import ServiceError, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "config" / "scenarios"
PASSWORD = "frost-at-0214"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--metrics-recording-only",
]


def chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        raise ServiceError("chromium is not installed; run scripts/test, which installs it")
    return path


def school_config(directory: Path, db: Path) -> Path:
    """The school site's config (`config/scenarios/school.yaml`) with its case store at `db`
    and no rule state file, written to `directory/site.yaml`."""
    text = (SCENARIOS / "school.yaml").read_text(encoding="utf-8")
    text += f"\ncases:\n  sqlite: {db}\nstream:\n  state: null\n"
    path = directory / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def prepare_site(directory: Path, scenario: str = "boiler-fire") -> Path:
    """The school site with its cases in `directory/cases.db`, opened by replaying `scenario`;
    users eva (facilities, English), jonas (facilities, Swedish), per (plumbing) and larm
    (emergency) sign in with PASSWORD. Returns the config file."""
    db = directory / "cases.db"
    config_path = school_config(directory, db)
    config = load_config(config_path)
    store = SqliteCaseStore(db)
    try:
        await replay_path(SCENARIOS / f"{scenario}.yaml", config, store=store)
        for uid, language in (("eva", "en"), ("jonas", "sv"), ("per", "en"), ("larm", "en")):
            user = await store.get_user(uid)
            assert user is not None, uid
            await store.add_user(
                user.model_copy(update={"name": uid.title(), "language": language}), now=_t0()
            )
            await store.set_password(uid, hash_password(PASSWORD))
    finally:
        await store.aclose()
    return config_path


def _t0():
    from datetime import UTC, datetime

    return datetime(2026, 1, 15, tzinfo=UTC)


class Server:
    """`husvakt cases serve` as its own process on a free loopback port."""

    def __init__(self, config: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "husvakt.cli",
                "cases",
                "serve",
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        wait_for_port("127.0.0.1", self.port, proc=self.proc, timeout=30)

    def stop(self) -> None:
        stop_process(self.proc)


async def sign_in(page, base: str, user: str) -> None:
    await page.goto(f"{base}/login")
    await page.get_by_label("User").fill(user)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/cases*")


async def screenshots(out: Path) -> list[Path]:
    """The work list and a case page at phone (360 px) and desktop (1280 px) width."""
    from playwright.async_api import async_playwright

    work = out / "site"
    await asyncio.to_thread(shutil.rmtree, work, ignore_errors=True)
    await asyncio.to_thread(work.mkdir, parents=True)
    server = Server(await prepare_site(work))
    taken = []
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            for name, size in (("phone", (360, 740)), ("desktop", (1280, 800))):
                context = await browser.new_context(
                    viewport={"width": size[0], "height": size[1]}, device_scale_factor=2
                )
                page = await context.new_page()
                await sign_in(page, server.url, "larm")
                await page.goto(f"{server.url}/cases?view=team")
                taken.append(out / f"work-list-{name}.png")
                await page.screenshot(path=taken[-1], full_page=True)
                await page.locator(".case a").first.click()
                await page.wait_for_selector(".case-page")
                taken.append(out / f"case-{name}.png")
                await page.screenshot(path=taken[-1], full_page=True)
                await context.close()
            await browser.close()
    finally:
        server.stop()
    return taken


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots")
    for path in asyncio.run(screenshots(target)):
        print(path)
