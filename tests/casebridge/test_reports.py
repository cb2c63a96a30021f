"""Reports from the timeline, in SQL, on every store: a hand-made timeline with known answers
(SQLite, PostgreSQL), the month trend in the report's time zone, the filters, and the
percentiles against Python's own for random timelines."""

import asyncio
import re
import statistics
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casebridge.auth import hash_password
from casebridge.models import OpenPlan, User
from casebridge.reports import build_report, parse_period, report_csv, report_json, report_table
from casebridge.store.sql import MIGRATIONS, MemoryCaseStore, SqlCaseStore, SqliteCaseStore
from husvakt.assemble import case_web_app
from husvakt.config import load_config
from tests.casebridge.test_web import PASSWORD, sign_in
from tests.casebridge.timeline import KNOWN_CSV, NOW, TZ, seed_known_timeline
from tests.factories import make_alarm, make_draft
from tests.web.site import school_config

PERIOD = parse_period("2026-01", "2026-02", TZ)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def seeded(request, tmp_path):
    if request.param == "postgres":
        store = SqlCaseStore.from_url(request.getfixturevalue("postgres_url"))
    else:
        store = SqliteCaseStore(tmp_path / "cases.db")
    await store.start()
    await seed_known_timeline(store)
    yield store
    await store.aclose()


async def test_the_known_timeline_gives_the_known_answers(seeded):
    report = await build_report(seeded, PERIOD, now=NOW)
    assert report_csv(report) == KNOWN_CSV


async def test_the_month_trend_counts_in_the_reports_time_zone(seeded):
    report = await build_report(seeded, PERIOD, now=NOW)
    trend = [(m.month, m.opened, m.sla_breached, m.false_alarms) for m in report.trend]
    # case G opened at 23:30 UTC on New Year's Eve: 00:30 on January 1 in Stockholm
    assert trend == [("2026-01", 4, 1, 1), ("2026-02", 2, 1, 0)]
    in_utc = await build_report(seeded, parse_period("2026-01", "2026-02", "UTC"), now=NOW)
    # in UTC, G was opened in December and the 22:30 case too: January has one fewer
    assert [m.opened for m in in_utc.trend] == [3, 2]


async def test_a_report_narrowed_to_a_team_or_a_site(seeded):
    plumbing = await build_report(seeded, PERIOD, now=NOW, teams=["plumbing"])
    assert [(r.team, r.site, r.condition, r.opened) for r in plumbing.rows] == [
        ("plumbing", "sodra", "fire", 1)
    ]
    assert (plumbing.total.opened, plumbing.total.sla_breached) == (1, 1)
    sodra = await build_report(seeded, PERIOD, now=NOW, sites=["sodra"])
    assert [(r.team, r.condition) for r in sodra.rows] == [
        ("facilities", "freezing"),
        ("plumbing", "fire"),
    ]
    assert sodra.total.opened == 2
    nobody = await build_report(seeded, PERIOD, now=NOW, sites=["nowhere"])
    assert (nobody.rows, nobody.total.opened, nobody.total.ack_median) == ((), 0, None)


async def test_the_sla_of_a_case_still_running_is_neither_met_nor_breached(seeded):
    # on February 3 at 10:30, case D (due 11:00) has not been acknowledged, but is not late
    report = await build_report(seeded, PERIOD, now=datetime(2026, 2, 3, 10, 30, tzinfo=UTC))
    plumbing = next(r for r in report.rows if r.team == "plumbing")
    assert (plumbing.sla_met, plumbing.sla_breached) == (0, 0)


async def test_json_and_table_carry_the_same_figures(seeded):
    report = await build_report(seeded, PERIOD, now=NOW)
    data = report_json(report)
    assert (data["from"], data["to"], data["timezone"], data["times"]) == (
        "2026-01-01",
        "2026-02-28",
        TZ,
        "seconds",
    )
    assert data["total"]["ack_median"] == 600.0
    assert data["total"]["resolve_p90"] == 9360.0
    assert [m["month"] for m in data["months"]] == ["2026-01", "2026-02"]
    table = report_table(report)
    assert "2026-01-01 to 2026-02-28 (Europe/Stockholm)" in table
    assert table.splitlines()[-1].split() == [
        "all", "all", "all", "6", "10.0", "62.0", "30.0", "156.0", "3", "2", "2", "1", "1", "1",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("first", "last", "problem"),
    [
        ("2026-03", "2026-01", "ends before it begins"),
        ("2026-13", "2026-14", "not a date"),
        ("yesterday", "2026-01", "not a date"),
        ("2000-01", "2026-01", "at most 120 months"),
    ],
)
def test_a_period_a_person_mistypes_is_a_clear_error(first, last, problem):
    with pytest.raises(ValueError, match=problem):
        parse_period(first, last, TZ)
    with pytest.raises(ValueError, match="no time zone"):
        parse_period("2026-01", "2026-02", "Mars/Olympus")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    delays=st.lists(
        st.tuples(st.integers(1, 86_400), st.one_of(st.none(), st.integers(1, 86_400))),
        min_size=1,
        max_size=25,
    )
)
def test_percentiles_in_sql_are_the_interpolated_ones(delays):
    """For any timeline: median and p90 as `statistics.quantiles(method="inclusive")`."""

    async def run():
        store = MemoryCaseStore()
        await store.start()
        start = datetime(2026, 1, 5, tzinfo=UTC)
        try:
            for i, (ack, resolve) in enumerate(delays):
                opened = start + timedelta(hours=i)
                alarm = make_alarm(sensor=f"t{i}", ts=opened, started_at=opened)
                outcome = await store.record_alarm(
                    alarm, make_draft(), OpenPlan(), now=opened, reopen_window=0
                )
                case = outcome.case.id
                await store.act(
                    case, "acknowledge", actor="eva", now=opened + timedelta(seconds=ack)
                )
                if resolve is not None:
                    done = opened + timedelta(seconds=ack + resolve)
                    await store.act(case, "resolve", actor="eva", now=done)
            return await build_report(store, parse_period("2026-01", "2026-02", "UTC"), now=NOW)
        finally:
            await store.aclose()

    report = asyncio.run(run())

    def expected(values, q):
        if not values:
            return None
        if len(values) == 1:
            return float(values[0])
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        return cuts[q - 1]

    acks = [a for a, _ in delays]
    resolves = [a + r for a, r in delays if r is not None]
    total = report.total
    for got, want in (
        (total.ack_median, expected(acks, 50)),
        (total.ack_p90, expected(acks, 90)),
        (total.resolve_median, expected(resolves, 50)),
        (total.resolve_p90, expected(resolves, 90)),
    ):
        assert (got is None and want is None) or got == pytest.approx(want, abs=0.01)


async def test_events_written_before_the_upgrade_get_the_status_they_led_to(tmp_path):
    """The timeline of an older store counts too: the migration reads the status from the
    text of each status change."""
    path = tmp_path / "old.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0005")
        conn.execute(
            sa.text(
                "INSERT INTO cases (number, site, sensor, condition, status, severity, team, "
                "priority, rule, threshold, value, episode, condition_active, opened_at, "
                "updated_at, draft, version) VALUES (1, 's', 't1', 'freezing', 'resolved', "
                "'warning', 'fm', 'P2', 'freezing', 5, 3, 'e', 0, '2026-01-10T02:00:00.000000Z', "
                "'2026-01-10T04:00:00.000000Z', :draft, 3)"
            ),
            {"draft": make_draft().model_dump_json()},
        )
        for i, (kind, text, at) in enumerate(
            [
                ("opened", "Freezing risk; routed to fm", "02:00"),
                ("status_changed", "new → acknowledged: on my way", "02:10"),
                ("status_changed", "acknowledged → in_progress", "02:20"),
                ("status_changed", "in_progress → resolved", "04:00"),
                ("comment", "a → b is not a status", "04:01"),
            ]
        ):
            conn.execute(
                sa.text(
                    "INSERT INTO case_events (id, case_number, at, kind, actor, text) "
                    "VALUES (:id, 1, :at, :kind, 'eva', :text)"
                ),
                {"id": i + 1, "at": f"2026-01-10T{at}:00.000000Z", "kind": kind, "text": text},
            )
    engine.dispose()
    store = SqliteCaseStore(path)
    await store.start()
    try:
        timeline = await store.timeline("HV-2026-000001")
        assert [e.status for e in timeline] == [
            "new",
            "acknowledged",
            "in_progress",
            "resolved",
            None,
        ]
        report = await build_report(store, parse_period("2026-01", "2026-01", "UTC"), now=NOW)
        assert (report.total.ack_median, report.total.resolve_median) == (600.0, 7200.0)
    finally:
        await store.aclose()


# --- the page, its CSV download and `husvakt report` ---------------------------------------


class _At:
    def __init__(self, now):
        self._now = now

    def now(self):
        return self._now

    async def sleep(self, seconds):
        raise AssertionError("nothing waits here")


@pytest.fixture
async def school(tmp_path):
    """The school config, its case store holding the known timeline, a dispatcher (disa,
    Swedish), an admin and a technician."""
    path = school_config(tmp_path, tmp_path / "cases.db")
    store = SqliteCaseStore(tmp_path / "cases.db")
    await store.start()
    await seed_known_timeline(store)
    for uid, role, language in (("disa", "dispatcher", "sv"), ("ada", "admin", "en"),
                                ("eva", "technician", "en")):  # fmt: skip
        await store.add_user(User(id=uid, name=uid, role=role, language=language), now=NOW)
        await store.set_password(uid, hash_password(PASSWORD))
    app = case_web_app(load_config(path), store=store, clock=_At(NOW))

    async def signed_in(user):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h")
        r = await sign_in(client, user, origin="http://h")
        assert r.status_code == 303
        return client

    yield path, signed_in, store
    await store.aclose()


def page_rows(html):
    """The report table's rows as the CSV has them (the condition by its id)."""
    rows = []
    for tr in re.findall(
        r"<tr[^>]*>(.*?)</tr>", html.split('id="report"', 1)[1].split("</table>")[0], re.S
    ):
        cells = re.findall(r"<(td|th)([^>]*)>(.*?)</\1>", tr, re.S)
        if not cells or 'scope="col"' in cells[0][1]:
            continue
        row = []
        for _, attrs, inner in cells:
            found = re.search(r'data-id="([^"]*)"', attrs)
            row.append(found.group(1) if found else inner.strip())
        rows.append(row)
    return rows


async def test_the_reports_page_shows_the_known_answers_and_its_csv_is_the_clis(school, tmp_path):
    path, signed_in, _ = school
    out = tmp_path / "report.csv"
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "husvakt.cli", "report", "--config", str(path), "--from",
         "2026-01", "--to", "2026-02", "--format", "csv", "--output", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cli_csv = out.read_text(encoding="utf-8")
    assert cli_csv == KNOWN_CSV

    client = await signed_in("ada")
    page = await client.get("/reports", params={"from": "2026-01-01", "to": "2026-02-28"})
    assert page.status_code == 200
    expected = [line.split(",") for line in KNOWN_CSV.splitlines()[1:]]
    shown = page_rows(page.text)
    assert shown[:-1] == expected[:-1]
    assert shown[-1][3:] == expected[-1][3:]  # the total row, headed "all"
    assert '<svg class="chart bars trend"' in page.text
    assert 'data-month="2026-01"><title>2026-01: opened 4, SLA breached 1, false alarms 1' in (
        page.text
    )
    download = await client.get(
        page.text.split('id="csv"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    )
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert download.headers["content-disposition"] == (
        'attachment; filename="husvakt-report-2026-01-01-2026-02-28.csv"'
    )
    assert download.text == cli_csv
    await client.aclose()


async def test_the_reports_page_in_swedish_narrowed_and_refused(school):
    _, signed_in, _ = school
    client = await signed_in("disa")
    page = await client.get(
        "/reports", params={"from": "2026-01", "to": "2026-02", "team": "plumbing"}
    )
    assert "<h1>Rapporter</h1>" in page.text and "falsklarm" in page.text
    assert page_rows(page.text) == [
        ["plumbing", "sodra", "fire", "1", "", "", "", "", "0", "1", "0", "0", "0", "0"],
        ["alla", "alla", "alla", "1", "", "", "", "", "0", "1", "0", "0", "0", "0"],
    ]
    bad = await client.get("/reports", params={"from": "2026-03", "to": "2026-01"})
    assert bad.status_code == 400 and "ends before it begins" in bad.text
    assert (await client.get("/reports.csv", params={"from": "x"})).status_code == 400
    # the default: the last three months up to today
    default = await client.get("/reports")
    assert 'name="from" value="2026-01-01"' in default.text
    assert 'name="to" value="2026-03-01"' in default.text
    await client.aclose()
    technician = await signed_in("eva")
    assert (await technician.get("/reports")).status_code == 404
    assert (await technician.get("/reports.csv")).status_code == 404
    assert "/reports" not in (await technician.get("/cases")).text
    await technician.aclose()


def test_the_cli_says_what_is_wrong(school):
    path, _, _ = school
    for args, message in (
        (["--from", "2026-02", "--to", "2026-01"], "ends before it begins"),
        (["--from", "2026-01", "--to", "2026-02", "--site", "nowhere"], "no site 'nowhere'"),
        (["--from", "2026-01", "--to", "2026-02", "--team", "ghosts"], "no team 'ghosts'"),
        (["--from", "2026-01", "--to", "2026-02", "--tz", "Mars/Base"], "no time zone"),
        (["--from", "0001-01", "--to", "0001-02"], "from 1970 to 9998"),
        (["--from", "2026-01\x1b[2J", "--to", "2026-02"], "is not a date"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "husvakt.cli", "report", "--config", str(path), *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 1 and message in result.stderr, (args, result.stderr)
    table = subprocess.run(
        [sys.executable, "-m", "husvakt.cli", "report", "--config", str(path), "--from",
         "2026-01", "--to", "2026-02", "--team", "plumbing"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert table.returncode == 0
    assert table.stdout.splitlines()[1].split()[:4] == ["team", "site", "condition", "opened"]


#: query strings as sent on the wire (percent-encoded: a lone surrogate has no other form)
HOSTILE_QUERIES = [
    "from=0001-01-01&to=0001-01-31",  # year 1: no UTC time before it
    "from=9999-12-01&to=9999-12-31",  # the last day: no day after it
    "from=2026-01-01%00&to=2026-02-01",
    "from=2026-01&to=2026-02&site=nord%00skolan",
    "from=2026-01&to=2026-02&team=%ED%A0%80",  # a lone surrogate, UTF-8 encoded
    "from=2026-01&to=2026-02&site=%27%3B%20DROP%20TABLE%20cases%3B%20--",
    "from=2026-01&to=2026-02&team=" + "x" * 5000,
    "from=" + "2" * 5000 + "&to=2026-02",
    "from=2026-01&to=2026-02&site=nowhere",  # a well-formed unknown: an empty report
]


@pytest.mark.parametrize("query", HOSTILE_QUERIES, ids=range(len(HOSTILE_QUERIES)))
async def test_hostile_report_queries_are_refused_and_the_reports_go_on(school, query):
    _, signed_in, store = school
    client = await signed_in("ada")
    for path in ("/reports", "/reports.csv"):
        r = await client.get(f"{path}?{query}")
        assert r.status_code in (200, 400, 422), (path, r.status_code, r.text[:200])
        if r.status_code == 200:
            assert path == "/reports" or r.text.splitlines()[-1].startswith("all,all,all,0,")
    # a genuine alarm still opens a case, and the report counts it
    opened = datetime(2026, 2, 20, 3, tzinfo=UTC)
    outcome = await store.record_alarm(
        make_alarm(site="nordskolan", sensor="late", ts=opened, started_at=opened),
        make_draft(team="facilities"),
        OpenPlan(),
        now=opened,
        reopen_window=0,
    )
    assert outcome.result == "opened"
    csv = await client.get("/reports.csv", params={"from": "2026-01", "to": "2026-02"})
    assert csv.text.splitlines()[-1].startswith("all,all,all,7,")
    await client.aclose()
