"""Readings by hand and kept readings: a caretaker enters a meter reading (CLI or site page),
the same rules evaluate it and open the case; a site page shows the latest values and a
meter's consumption per day; `husvakt readings export` writes CSV a spreadsheet reads."""

import csv
import io
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from casebridge.auth import hash_password
from casebridge.readings import ManualReadings, manual_reading
from casebridge.store.sql import SqliteCaseStore
from husvakt.assemble import case_desk, case_web_app, rule_engine
from husvakt.config import load_config
from husvakt.replay import VirtualClock, replay_path

ROOT = Path(__file__).resolve().parents[2]
SCHOOL = ROOT / "config" / "scenarios" / "school.yaml"
NOW = datetime(2026, 1, 20, 9, 0, tzinfo=UTC)
PASSWORD = "meter-reading-day"


@pytest.fixture
def site(tmp_path):
    """The school config with its case store in `tmp_path`."""
    text = SCHOOL.read_text(encoding="utf-8")
    text += f"\ncases:\n  sqlite: {tmp_path / 'cases.db'}\nstream:\n  state: null\n"
    path = tmp_path / "school.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def husvakt(*args):
    return subprocess.run(
        [sys.executable, "-m", "husvakt.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_reading_by_hand_is_checked_before_it_is_kept(site):
    config = load_config(site)
    sensors = config.sensor_index()

    def enter(**over):
        fields = {"site": "nordskolan", "sensor": "heat-m1", "value": 48210.0, "at": NOW,
                  "actor": "eva", "now": NOW}  # fmt: skip
        return manual_reading(sensors, **(fields | over))

    assert enter().unit == "kWh" and enter().kind == "heat"
    for over, message in (
        ({"sensor": "water-m1"}, "read by a device"),
        ({"sensor": "nope"}, "has no sensor"),
        ({"site": "elsewhere"}, "has no sensor"),
        ({"value": float("nan")}, "not a reading"),
        ({"value": float("inf")}, "not a reading"),
        ({"value": 1e300}, "not a reading"),
        ({"at": NOW + timedelta(hours=1)}, "in the future"),
        ({"at": NOW - timedelta(days=400)}, "more than a year ago"),
        ({"at": NOW.replace(tzinfo=None)}, "with its zone"),
    ):
        with pytest.raises(ValueError, match=message):
            enter(**over)


async def test_readings_by_hand_go_through_the_same_rules_and_open_the_case_once(site):
    # The heat meter read by hand every few days stands at the same value for more than eight
    # days: meter_stopped opens a case; a reading that moved clears it.
    config = load_config(site)
    store = SqliteCaseStore(config.cases.sqlite)
    await store.start()
    clock = VirtualClock(NOW)
    desk = case_desk(config, store=store, clock=clock)
    engine = rule_engine(config, clock=clock, sink=desk.hand_off, watch_gateways=True)
    evaluated = []

    async def hand(readings):
        evaluated.extend(readings)
        await engine.process_batch(readings, outbox="manual", source="by hand")

    manual = ManualReadings(store, hand)
    sensors = config.sensor_index()
    try:
        for days, value in ((-10, 48000.0), (-6, 48000.0), (-1, 48000.0)):
            reading = manual_reading(
                sensors, site="nordskolan", sensor="heat-m1", value=value,
                at=NOW + timedelta(days=days), actor="eva", now=NOW,
            )  # fmt: skip
            await store.add_manual_reading(reading)
        assert await manual.once() == 3
        assert await manual.once() == 0  # evaluated once
        (case,) = await store.list_cases()
        assert (case.sensor, case.condition, case.team) == (
            "heat-m1",
            "meter_stopped",
            "facilities",
        )
        assert case.draft.unit == "s" and case.value == 9 * 86400
        # the readings came from the `manual` gateway, numbered by their rows
        assert {r.gateway for r in evaluated} == {"manual"} and [r.seq for r in evaluated] == [
            1,
            2,
            3,
        ]
        await store.add_manual_reading(
            manual_reading(
                sensors,
                site="nordskolan",
                sensor="heat-m1",
                value=48350.0,
                at=NOW,
                actor="jonas",
                now=NOW,
            )
        )
        assert await manual.once() == 1
        (case,) = await store.list_cases()
        assert not case.condition_active
        # no sensor_offline for a meter nobody reads every few minutes, no gateway_offline
        # for the readings' gateway
        clock.value = NOW + timedelta(days=3)
        await engine.tick()
        assert [c.condition for c in await store.list_cases()] == ["meter_stopped"]
    finally:
        engine.close()
        await store.aclose()


async def test_a_failed_hand_over_leaves_the_readings_waiting(site):
    config = load_config(site)
    store = SqliteCaseStore(config.cases.sqlite)
    await store.start()

    async def broken(readings):
        raise RuntimeError("the engine is restarting")

    try:
        reading = manual_reading(config.sensor_index(), site="nordskolan", sensor="heat-m1",
                                 value=1.0, at=NOW, actor="eva", now=NOW)  # fmt: skip
        await store.add_manual_reading(reading)
        with pytest.raises(RuntimeError):
            await ManualReadings(store, broken).once()
        assert len(await store.pending_readings()) == 1
    finally:
        await store.aclose()


def test_husvakt_readings_add_and_export_from_the_command_line(site, tmp_path):
    now = datetime.now(UTC).replace(microsecond=0)
    at = (now - timedelta(hours=2)).isoformat()
    added = husvakt("readings", "add", "--config", str(site), "--site", "nordskolan",
                    "--sensor", "heat-m1", "--value", "48210.5", "--at", at, "--by", "=cmd|calc")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "kept reading 1: nordskolan/heat-m1 48210.5 kWh" in added.stdout
    again = husvakt("readings", "add", "--config", str(site), "--site", "nordskolan",
                    "--sensor", "heat-m1", "--value", "1", "--at", at)  # fmt: skip
    assert again.returncode == 1 and "already has a reading by hand" in again.stderr
    device = husvakt("readings", "add", "--config", str(site), "--site", "nordskolan",
                     "--sensor", "water-m1", "--value", "1")  # fmt: skip
    assert device.returncode == 1 and "read by a device, not by hand" in device.stderr
    nan = husvakt("readings", "add", "--config", str(site), "--site", "nordskolan",
                  "--sensor", "heat-m1", "--value", "nan")  # fmt: skip
    assert nan.returncode == 1 and "not a reading" in nan.stderr
    start, end = (now - timedelta(days=1)).date().isoformat(), (now + timedelta(days=1)).date()
    out = tmp_path / "readings.csv"
    exported = husvakt("readings", "export", "--config", str(site), "--site", "nordskolan",
                       "--from", start, "--to", end.isoformat(), "--output", str(out))  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [(r["sensor"], r["value"], r["unit"], r["source"]) for r in rows] == [
        ("heat-m1", "48210.5", "kWh", "manual")
    ]
    assert rows[0]["by"] == "'=cmd|calc"  # a spreadsheet shows it, never runs it
    assert rows[0]["local"].endswith("+01:00")  # Stockholm in winter
    backwards = husvakt("readings", "export", "--config", str(site), "--site", "nordskolan",
                        "--from", end.isoformat(), "--to", start)  # fmt: skip
    assert backwards.returncode == 1 and "--to must be after --from" in backwards.stderr


class Clock:
    def __init__(self, now):
        self.value = now

    def now(self):
        return self.value


async def test_the_site_page_shows_latest_values_a_meters_days_and_takes_a_reading_by_hand(site):
    config = load_config(site)
    store = SqliteCaseStore(config.cases.sqlite)
    await store.start()
    # a night of the water meter kept by a replay, and the heat meter read by hand
    await replay_path(ROOT / "config" / "scenarios" / "night-flow.yaml", config, store=store)
    for uid, role in (("eva", "technician"), ("ivan", "integrator")):
        user = await store.get_user(uid) if uid == "eva" else None
        if user is None:
            from casebridge.models import User

            user = User(id=uid, name=uid.title(), role=role)
            await store.add_user(user, now=NOW)
        await store.set_password(uid, hash_password(PASSWORD))
    now = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
    app = case_web_app(config, store=store, clock=Clock(now))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://husvakt") as client:
            signed = await client.post("/login", data={"user": "eva", "password": PASSWORD,
                                                       "next": "/cases"},
                                       headers={"Origin": "http://husvakt"})  # fmt: skip
            assert signed.status_code == 303
            page = await client.get("/sites/nordskolan")
            assert page.status_code == 200
            html = page.text
            # the water meter's last reading, wrapped past 2^32, in litres, and its days
            row = re.search(r'<tr id="sensor-water-m1">(.*?)</tr>', html, re.S).group(1)
            assert "204 l" in row  # 4294967500 − 2^32
            assert "consumption per day (l)" in html and 'class="bar"' in html
            assert "2026-01-14: " in html and "2026-01-15: " in html
            assert 'action="/sites/nordskolan/readings"' in html  # heat-m1 is read by hand
            token = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)
            sent = await client.post(
                "/sites/nordskolan/readings",
                data={"csrf": token, "sensor": "heat-m1", "value": "48 210,5".replace(" ", ""),
                      "at": "2026-01-15T09:30"},
            )  # fmt: skip
            assert sent.status_code == 303 and sent.headers["location"].endswith("?kept=heat-m1")
            shown = await client.get(sent.headers["location"])
            row = re.search(r'<tr id="sensor-heat-m1">(.*?)</tr>', shown.text, re.S).group(1)
            assert "48210.5 kWh" in row and "2026-01-15 09:30" in row and "eva" in row
            bad = await client.post("/sites/nordskolan/readings",
                                    data={"csrf": token, "sensor": "water-m1", "value": "1"})  # fmt: skip
            assert bad.status_code == 400 and "read by a device" in bad.text
            forged = await client.post("/sites/nordskolan/readings",
                                       data={"csrf": "0" * 64, "sensor": "heat-m1", "value": "1"})  # fmt: skip
            assert forged.status_code == 403
            pending = await store.pending_readings()
            assert [(r.sensor, r.value, r.actor) for r in pending] == [("heat-m1", 48210.5, "eva")]
        async with httpx.AsyncClient(transport=transport, base_url="http://husvakt") as client:
            await client.post("/login", data={"user": "ivan", "password": PASSWORD,
                                              "next": "/cases"},
                              headers={"Origin": "http://husvakt"})  # fmt: skip
            page = await client.get("/sites/nordskolan")
            assert (
                page.status_code == 200 and 'action="/sites/nordskolan/readings"' not in page.text
            )
            token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)  # sign-out
            refused = await client.post("/sites/nordskolan/readings",
                                        data={"csrf": token, "sensor": "heat-m1", "value": "2"})  # fmt: skip
            assert refused.status_code == 403 and "enters no readings" in refused.text
    finally:
        await store.aclose()


async def test_a_hostile_reading_form_gets_a_clear_refusal_and_a_genuine_one_still_goes_in(site):
    config = load_config(site)
    store = SqliteCaseStore(config.cases.sqlite)
    await store.start()
    from casebridge.models import User

    await store.add_user(User(id="eva", name="Eva", role="technician"), now=NOW)
    await store.set_password("eva", hash_password(PASSWORD))
    app = case_web_app(config, store=store, clock=Clock(NOW))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://husvakt") as client:
            await client.post("/login", data={"user": "eva", "password": PASSWORD,
                                              "next": "/cases"},
                              headers={"Origin": "http://husvakt"})  # fmt: skip
            page = await client.get("/sites/nordskolan")
            token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)
            form = "application/x-www-form-urlencoded"
            hostile = [
                ("heat-m1\x00", "1", ""),  # NUL in the sensor
                ("heat-m1%ED%A0%80", "1", ""),  # a lone surrogate, as raw UTF-8 bytes
                ("../../etc/passwd", "1", ""),
                ("heat-m1", "nan", ""),
                ("heat-m1", "1e400", ""),
                ("heat-m1", "x" * 40, ""),
                ("heat-m1", "1", "0001-01-01T00:00"),
                ("heat-m1", "1", "9999-12-31T23:59"),
                ("heat-m1", "1", "2026-13-45T99:99"),
                ("heat-m1", "1", "0001-01-01T00:00+14:00"),
            ]
            for sensor, value, at in hostile:
                body = (f"csrf={token}&sensor={sensor if '%' in sensor else quote(sensor)}"
                        f"&value={quote(value)}&at={quote(at)}")  # fmt: skip
                answer = await client.post("/sites/nordskolan/readings", content=body,
                                           headers={"Content-Type": form})  # fmt: skip
                assert answer.status_code in (400, 422), (sensor, value, at, answer.status_code)
            too_long = await client.post(
                "/sites/nordskolan/readings",
                data={"csrf": token, "sensor": "heat-m1", "value": "1" * 5000},
            )
            assert too_long.status_code == 422
            assert await store.pending_readings() == []  # nothing hostile was kept
            genuine = await client.post(
                "/sites/nordskolan/readings",
                data={"csrf": token, "sensor": "heat-m1", "value": "48210,5"},
            )
            assert genuine.status_code == 303
            (kept,) = await store.pending_readings()
            assert (kept.sensor, kept.value) == ("heat-m1", 48210.5)
    finally:
        await store.aclose()
