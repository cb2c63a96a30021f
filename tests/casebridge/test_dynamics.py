"""Cases mirrored to Dynamics 365 through the real Web API protocol (the Dataverse stand-in
over TLS, msal signing in at its token endpoint): one incident per case whatever happens."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import trustme

from casebridge.models import OpenPlan
from casebridge.sinks import SinkRunner
from casebridge.sinks.config import DynamicsMapping, DynamicsSinkConfig
from casebridge.sinks.dynamics.client import DataverseClient
from casebridge.sinks.dynamics.sink import DynamicsSink
from casebridge.store.sql import SqliteCaseStore
from tests.casebridge.served import BACKENDS, store_for
from tests.dataverse import KEY, TENANT, Running, dataverse
from tests.factories import T0, ManualClock, make_alarm, make_draft

pytestmark = pytest.mark.dynamics

CLIENT = "0b7c56a4-5d2e-4f1b-9a61-2f7f3c1d9e01"
SECRET = "a-long-client-secret"


@pytest.fixture
async def standin(tmp_path: Path):
    async with dataverse(tmp_path, client_id=CLIENT, secret=SECRET) as running:
        yield running


def sink_config(standin: Running, tmp_path: Path, **over) -> DynamicsSinkConfig:
    secret = tmp_path / "dynamics.secret"
    secret.write_text(SECRET + "\n")
    school = standin.service.add("accounts", name="Skolan")
    fields = {
        "id": "dynamics",
        "type": "dynamics",
        "url": standin.url,
        "tenant": TENANT,
        "client_id": CLIENT,
        "client_secret_file": secret,
        "authority": f"{standin.url}/{TENANT}",
        "ca_file": standin.ca_file,
        "mapping": DynamicsMapping(accounts={"s": school}),
        "poll": 30.0,
    }
    return DynamicsSinkConfig(**(fields | over))


class World:
    def __init__(self, store, standin: Running, config: DynamicsSinkConfig) -> None:
        self.store = store
        self.standin = standin
        self.service = standin.service
        self.clock = ManualClock(T0)
        self.config = config
        self.sink = DynamicsSink(config, store=store, client=DataverseClient(config))
        self.runner = SinkRunner(
            store=store,
            sink=self.sink,
            clock=self.clock,
            batch=config.batch,
            pull=self.sink.pull,
            pull_every=config.poll,
        )

    async def open(self, n: int, *, minute: int = 0, first: int = 0) -> list[str]:
        """Alarms at n sensors (t<first>…): a case each (or an alarm on the open one)."""
        outcomes = []
        for i in range(first, first + n):
            alarm = make_alarm(sensor=f"t{i}", minute=minute)
            outcomes.append(
                await self.store.record_alarm(
                    alarm, make_draft(), OpenPlan(), now=self.clock.now(), reopen_window=0
                )
            )
        return [o.case.id for o in outcomes]

    async def mirror(self) -> int:
        return await self.runner.run_due(self.clock.now())

    async def waiting(self) -> int:
        return (await self.store.sink_status("dynamics", self.clock.now())).waiting


@pytest.fixture(params=BACKENDS)
async def world(request: pytest.FixtureRequest, tmp_path: Path, standin: Running):
    store = await store_for(request, tmp_path)
    w = World(store, standin, sink_config(standin, tmp_path))
    await w.runner.start()
    yield w
    await w.sink.aclose()
    await store.aclose()


async def test_a_case_becomes_one_incident_with_its_customer_priority_and_description(world):
    (case_id,) = await world.open(1)
    assert await world.mirror() == 1
    incidents = world.service.incidents()
    assert list(incidents) == [case_id]
    incident = incidents[case_id]
    assert incident["customerid_account"] == world.config.mapping.accounts["s"]
    assert incident["prioritycode"] == 2  # P2
    assert incident["caseorigincode"] == 700610000
    assert case_id in incident["title"]
    assert "Freezing risk" in incident["description"]
    assert await world.waiting() == 0
    assert await world.mirror() == 0  # nothing changed: nothing sent


async def test_an_alarm_storm_is_one_incident_per_case_in_batches(world):
    ids = await world.open(250)
    assert await world.mirror() == 250
    assert sorted(world.service.incidents()) == sorted(ids)
    # three $batch requests of create-only writes (100, 100, 50), and nothing else but the
    # first poll of changes (WhoAmI and one page)
    assert [p for _, p in world.service.log if not p.startswith("incidents")] == [
        "WhoAmI",
        "$batch",
        "$batch",
        "$batch",
    ]
    assert await world.waiting() == 0


async def test_dynamics_down_for_hours_then_back_gets_everything_in_order_once(world):
    first = await world.open(3)
    assert await world.mirror() == 3
    await world.standin.stop()  # unreachable: connections refused
    later = await world.open(4, minute=5, first=3)
    await world.store.act(
        first[0], "comment", actor="eva", now=world.clock.now(), text="Frost in the pipes"
    )
    await world.store.act(
        first[0], "resolve", actor="eva", now=world.clock.now(), text="Heater fixed"
    )
    for _ in range(20):  # hours of rounds: each one finds Dynamics unreachable
        world.clock.advance(seconds=600)
        assert await world.mirror() == 0
    assert not world.runner.available
    assert await world.waiting() == 5  # a changed case and four new ones
    await world.standin.start()
    world.clock.advance(seconds=600)
    assert await world.mirror() == 5
    incidents = world.service.incidents()
    assert sorted(incidents) == sorted(first + later)
    resolved = incidents[first[0]]
    assert (resolved["statecode"], resolved["statuscode"]) == (1, 5)
    notes = [n["notetext"] for n in world.service.notes(resolved["incidentid"])]
    assert len(notes) == 2 and "Frost in the pipes" in notes[0] and "Heater fixed" in notes[1]
    assert await world.waiting() == 0
    assert await world.mirror() == 0


async def test_a_token_that_expired_is_renewed_and_the_case_still_goes_out(world):
    (case_id,) = await world.open(1)
    assert await world.mirror() == 1
    world.service.expire_tokens()  # msal still holds it: the Web API answers 401
    await world.store.act(case_id, "comment", actor="eva", now=world.clock.now(), text="on my way")
    assert await world.mirror() == 1
    assert world.service.tokens_issued == 2
    assert len(world.service.notes(world.service.incidents()[case_id]["incidentid"])) == 1


async def test_throttling_pauses_the_sink_for_retry_after_and_then_goes_on(world):
    await world.open(2)
    world.service.throttle(1, retry_after=120)
    assert await world.mirror() == 0
    world.clock.advance(seconds=60)
    assert await world.mirror() == 0  # still inside Retry-After: nothing sent
    sent = len(world.service.log)
    world.clock.advance(seconds=61)
    assert await world.mirror() == 2
    assert len(world.service.log) > sent
    assert len(world.service.incidents()) == 2


async def test_an_incident_made_before_a_crash_is_updated_not_doubled(world):
    (case_id,) = await world.open(1)
    # a previous run created it and died before writing down that it had
    world.service.add("incidents", **{KEY: case_id, "title": "half done"})
    assert await world.mirror() == 1
    incidents = [
        i for i in world.service.tables["incidents"].rows.values() if i.get(KEY) == case_id
    ]
    assert len(incidents) == 1 and case_id in incidents[0]["title"]


async def test_an_incident_deleted_in_dynamics_is_made_again_on_the_next_change(world):
    (case_id,) = await world.open(1)
    await world.mirror()
    world.service.delete("incidents", world.service.incidents()[case_id]["incidentid"])
    await world.store.act(case_id, "comment", actor="eva", now=world.clock.now(), text="still cold")
    assert await world.mirror() == 1
    assert list(world.service.incidents()) == [case_id]


async def test_a_case_resolved_in_dynamics_is_resolved_in_husvakt_by_that_person(world):
    ids = await world.open(2)
    await world.mirror()
    dispatcher = world.service.add_user("Disa Patcher")
    incident = world.service.incidents()[ids[0]]
    world.service.act_as(dispatcher, "incidents", incident["incidentid"], statecode=1, statuscode=5)
    world.clock.advance(seconds=31)
    await world.mirror()
    case = await world.store.get_case(ids[0])
    assert case.status == "resolved"
    last = (await world.store.timeline(ids[0]))[-1]
    assert last.actor == "dynamics:Disa Patcher" and "Dynamics 365" in last.text
    assert (await world.store.get_case(ids[1])).status == "new"  # the other untouched
    # the resolution is not sent back (it came from there), and nothing loops
    world.clock.advance(seconds=31)
    await world.mirror()
    assert await world.waiting() == 0
    assert world.service.notes(incident["incidentid"]) == []


async def test_a_comment_in_husvakt_while_dynamics_resolves_keeps_both(world):
    (case_id,) = await world.open(1)
    await world.mirror()
    dispatcher = world.service.add_user("Disa Patcher")
    incident = world.service.incidents()[case_id]
    world.service.act_as(dispatcher, "incidents", incident["incidentid"], statecode=1, statuscode=5)
    await world.store.act(
        case_id, "comment", actor="eva", now=world.clock.now(), text="the valve was frozen"
    )
    world.clock.advance(seconds=31)
    await world.mirror()
    assert (await world.store.get_case(case_id)).status == "resolved"
    notes = world.service.notes(incident["incidentid"])
    assert [n["notetext"].split(": ", 1)[1] for n in notes] == ["the valve was frozen"]
    assert world.service.incidents()[case_id]["modifiedby"] == dispatcher  # its resolution stands


async def test_a_photo_on_the_case_is_a_note_with_the_photo_attached(world):
    """The technician's photo reaches the incident as a note carrying the file (the photo as
    husvakt stores it: without its position), once, whatever the retries."""
    import base64
    import io

    from PIL import Image

    from casebridge.photos import prepare_photo
    from tests.casebridge.test_photos import jpeg

    (case_id,) = await world.open(1)
    await world.mirror()
    photo = prepare_photo(jpeg(800, 600), max_pixels=10_000_000)
    event, _ = await world.store.attach_photo(
        case_id, photo, caption="Valve closed", actor="eva", now=world.clock.now(), per_case=5
    )
    world.clock.advance(seconds=1)
    assert await world.mirror() == 1
    incident = world.service.incidents()[case_id]
    (note,) = [n for n in world.service.notes(incident["incidentid"]) if n.get("documentbody")]
    assert note["filename"] == f"{case_id}-{event.photo[:8]}.jpg"
    assert note["mimetype"] == "image/jpeg"
    assert note["notetext"].endswith("eva: Valve closed")
    sent = base64.b64decode(note["documentbody"])
    assert sent == photo.data
    assert Image.open(io.BytesIO(sent)).size == (800, 600) and b"SECRETCAM" not in sent
    world.clock.advance(seconds=1)
    assert await world.mirror() == 0  # sent once
    # removed in husvakt (a pupil in the picture): the file does not stay in Dynamics either
    await world.store.remove_photo(
        case_id, event.photo, actor="disa", now=world.clock.now(), reason="a pupil in it"
    )
    world.clock.advance(seconds=1)
    assert await world.mirror() == 1
    notes = world.service.notes(incident["incidentid"])
    assert not [n for n in notes if n.get("documentbody")]
    assert any(n["notetext"].endswith("disa: photo removed: a pupil in it") for n in notes)


def test_a_photo_larger_than_dynamics_takes_is_a_note_that_says_so(standin, tmp_path):
    from casebridge.models import CaseEvent
    from casebridge.sinks.dynamics.mapping import ATTACHMENT_LIMIT, Attachment, annotation

    config = sink_config(standin, tmp_path)
    event = CaseEvent(case_id="HV-2026-000001", at=T0, kind="photo", actor="eva",
                      text="Valve", photo="abc", cursor=7)  # fmt: skip
    big = Attachment("HV-2026-000001-abc.png", "image/png", b"x" * (ATTACHMENT_LIMIT + 1))
    body = annotation(config, "00000000-0000-0000-0000-000000000001", event, big).body
    assert "documentbody" not in body and "filename" not in body
    assert body["notetext"].endswith("eva: Valve (the photo, 5,242,881 bytes, is larger than "
                                     "Dynamics takes)")  # fmt: skip
    small = Attachment("HV-2026-000001-abc.jpg", "image/jpeg", b"\xff\xd8\xff")
    body = annotation(config, "00000000-0000-0000-0000-000000000001", event, small).body
    assert (body["filename"], body["mimetype"], body["documentbody"]) == (
        "HV-2026-000001-abc.jpg", "image/jpeg", "/9j/",
    )  # fmt: skip


def config_file(tmp_path: Path, standin: Running, account: str, *, batch: int = 10) -> Path:
    (tmp_path / "dynamics.secret").write_text(SECRET + "\n")
    path = tmp_path / "husvakt.yaml"
    path.write_text(
        f"""
sites:
  - {{id: s, name: S}}
teams:
  - {{id: fm, name: Facilities}}
routing:
  - {{id: all, team: fm}}
cases:
  sqlite: cases.db
sinks:
  - id: dynamics
    type: dynamics
    url: {standin.url}
    tenant: {TENANT}
    client_id: {CLIENT}
    client_secret_file: dynamics.secret
    authority: {standin.url}/{TENANT}
    ca_file: {standin.ca_file}
    batch: {batch}
    every: 0.05
    poll: 0
    mapping:
      accounts: {{s: {account}}}
"""
    )
    return path


async def _until(predicate, *, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)  # the stand-in serves in this loop meanwhile


async def test_kill_9_mid_mirror_loses_and_doubles_nothing(tmp_path: Path, standin: Running):
    account = standin.service.add("accounts", name="Skolan")
    config = config_file(tmp_path, standin, account)
    store = SqliteCaseStore(tmp_path / "cases.db")
    await store.start()
    world = World(store, standin, sink_config(standin, tmp_path))
    ids = await world.open(300)
    for case_id in ids[::10]:
        await store.act(case_id, "comment", actor="eva", now=T0, text=f"seen {case_id}")
    await world.sink.aclose()
    cli = [
        sys.executable,
        "-m",
        "husvakt.cli",
        "sinks",
        "sync",
        "--follow",
        "--config",
        str(config),
    ]
    rows = standin.service.tables["incidents"].rows
    first = subprocess.Popen(cli, stderr=subprocess.DEVNULL)
    try:
        await _until(lambda: len(rows) >= 40)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert len(rows) < 300, "the kill came after everything was mirrored; nothing was tested"
    second = subprocess.Popen(cli, stderr=subprocess.DEVNULL)
    try:
        await _until(
            lambda: len(rows) >= 300 and len(standin.service.tables["annotations"].rows) >= 30
        )
        for _ in range(200):  # the last mirror is written down just after its request
            if not (await store.sink_status("dynamics", T0)).waiting:
                break
            await asyncio.sleep(0.05)
        assert not (await store.sink_status("dynamics", T0)).waiting
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(10)
    keys = [r[KEY] for r in rows.values()]
    assert sorted(keys) == sorted(ids)  # every case once: none lost, none doubled
    notes = [n["notetext"] for n in standin.service.tables["annotations"].rows.values()]
    assert len(notes) == 30 and len(set(notes)) == 30
    await store.aclose()


async def husvakt(*args: str) -> tuple[int, str]:
    """Run the husvakt CLI while the stand-in keeps serving in this loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "husvakt.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


async def test_dynamics_check_finds_what_is_missing(tmp_path: Path, standin: Running):
    account = standin.service.add("accounts", name="Skolan")
    config = config_file(tmp_path, standin, account)
    code, out = await husvakt("dynamics", "check", "--config", str(config))
    assert code == 0, out
    assert "alternate key on hv_husvaktcaseid is active" in out
    assert "signed in to" in out
    wrong = "11111111-2222-3333-4444-555555555555"
    config.write_text(
        config.read_text().replace(
            f"accounts: {{s: {account}}}", f"accounts: {{s: {wrong}}}\n      priorities: {{P1: 9}}"
        )
    )
    code, out = await husvakt("dynamics", "check", "--config", str(config))
    assert code == 1, out
    assert f"PROBLEM account of site s: no account {wrong}" in out
    assert "[9] are not options of prioritycode" in out


async def test_dynamics_check_says_when_sign_in_is_refused(tmp_path: Path, standin: Running):
    account = standin.service.add("accounts", name="Skolan")
    config = config_file(tmp_path, standin, account)
    (tmp_path / "dynamics.secret").write_text("not-the-secret\n")
    code, out = await husvakt("dynamics", "check", "--config", str(config))
    assert code == 1
    assert "PROBLEM cannot reach or sign in" in out and "Invalid client secret" in out


async def test_explain_shows_the_requests_a_case_would_send_and_sends_nothing(
    tmp_path: Path, standin: Running
):
    account = standin.service.add("accounts", name="Skolan")
    config = config_file(tmp_path, standin, account)
    store = SqliteCaseStore(tmp_path / "cases.db")
    await store.start()
    world = World(store, standin, sink_config(standin, tmp_path))
    (case_id,) = await world.open(1)
    await store.act(case_id, "resolve", actor="eva", now=T0, text="thermostat replaced")
    await world.sink.aclose()
    await store.aclose()
    before = len(standin.service.log)
    code, out = await husvakt("dynamics", "explain", case_id, "--config", str(config))
    assert code == 0, out
    assert f"PATCH {standin.url}/api/data/v9.2/incidents(hv_husvaktcaseid='{case_id}')" in out
    assert "If-None-Match: *" in out
    assert f'"customerid_account@odata.bind": "/accounts({account})"' in out
    assert "CloseIncident" in out and "thermostat replaced" in out
    assert len(standin.service.log) == before


JSON = {"Content-Type": "application/json"}
HOSTILE_ANSWERS = {
    "not JSON": (200, JSON, b"<html>proxy error</html>"),
    "204 naming no record": (204, {}, b""),
    "a record id that is no GUID": (204, {"OData-EntityId": "https://x/incidents(1 or 1=1)"}, b""),
    "9 MB": (200, JSON, b'{"value": "' + b"x" * (9 * 1024 * 1024) + b'"}'),
    "deep JSON": (200, JSON, b"[" * 100_000 + b"]" * 100_000),
    "a batch without boundary": (200, {"Content-Type": "multipart/mixed"}, b"--x--"),
    "a batch of lies": (
        200,
        {"Content-Type": "multipart/mixed; boundary=b"},
        b"--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 OK\r\n" * 2000 + b"--b--",
    ),
    "Retry-After NaN": (429, {"Retry-After": "NaN"}, b""),
    "Retry-After a year": (429, {"Retry-After": "31536000"}, b""),
    "Retry-After negative": (429, {"Retry-After": "-5"}, b""),
    "Retry-After garbage date": (503, {"Retry-After": "Mon, 99 Foo 2026 25:61:61 GMT"}, b""),
    "a 400 with an error object of the wrong shape": (400, JSON, b'{"error": [1, 2, {"x": null}]}'),
    "a 500": (500, JSON, b'{"error": {"code": "0x0", "message": "boom"}}'),
}


@pytest.mark.parametrize("answer", HOSTILE_ANSWERS.values(), ids=HOSTILE_ANSWERS.keys())
async def test_a_broken_or_hostile_answer_stops_nothing_and_the_next_case_still_goes_out(
    world, answer
):
    await world.open(2)
    world.service.hostile[:] = [answer] * 3
    for _ in range(3):  # whatever it makes of those answers: no exception, no crash
        await world.mirror()
        world.clock.advance(seconds=3600)
    (fresh,) = await world.open(1, minute=70, first=5)
    for _ in range(3):  # the service is sane again: everything goes out
        await world.mirror()
        world.clock.advance(seconds=3600)
    assert sorted(world.service.incidents()) == sorted(
        [c.id for c in await world.store.list_cases()]
    )
    assert fresh in world.service.incidents()
    assert await world.waiting() == 0
    keys = [r[KEY] for r in world.service.tables["incidents"].rows.values()]
    assert len(keys) == len(set(keys)) == 3


HOSTILE_ROWS = [
    "not an object",
    None,
    [1, 2],
    {"incidentid": {"$ne": 1}, "statecode": 1},
    {"incidentid": "../../accounts", "statecode": 1, "_modifiedby_value": "x"},
    {"@odata.context": "x/$deletedEntity", "id": "zz"},
]


async def test_hostile_rows_in_the_changes_from_dynamics_change_no_case(world):
    ids = await world.open(2)
    await world.mirror()
    guid = world.service.incidents()[ids[0]]["incidentid"]
    forger = world.service.add_user("Mallory")
    page = {
        "value": [
            *HOSTILE_ROWS,
            # a real-looking row for an incident husvakt does not mirror
            {"incidentid": str(uuid.uuid4()), "statecode": 1, "_modifiedby_value": forger},
            # a statecode of the wrong type for one it does (JSON true == 1 in Python)
            {"incidentid": guid, "statecode": "1", "_modifiedby_value": forger},
            {"incidentid": guid, "statecode": True, "_modifiedby_value": forger},
            {"incidentid": guid, "statecode": 1.0, "_modifiedby_value": forger},
            # a GUID with a line break after it
            {"incidentid": guid + "\n", "statecode": 1, "_modifiedby_value": forger},
        ],
        "@odata.nextLink": "https://evil.example/api/data/v9.2/incidents?$skiptoken=1",
    }
    world.service.hostile[:] = [(200, JSON, json.dumps(page).encode())]
    await world.store.set_sink_cursor(
        "dynamics", f"{world.standin.url}/api/data/v9.2/incidents?$deltatoken=1", now=T0
    )
    world.clock.advance(seconds=31)
    await world.mirror()
    assert [c.status for c in await world.store.list_cases()] == ["new", "new"]
    assert not any(p.startswith("http") for _, p in world.service.log)
    # and a genuine resolution still comes through afterwards, its author's name made safe
    dispatcher = world.service.add_user("Disa\x00 Pat\ud800cher\u202e")
    world.service.act_as(dispatcher, "incidents", guid, statecode=1, statuscode=5)
    await world.store.set_sink_cursor("dynamics", None, now=T0)
    world.clock.advance(seconds=31)
    await world.mirror()
    assert (await world.store.get_case(ids[0])).status == "resolved"
    assert (await world.store.timeline(ids[0]))[-1].actor == "dynamics:Disa Patcher"


async def test_as_iot_alerts_a_case_is_one_alert_made_inactive_when_resolved(tmp_path, standin):
    store = SqliteCaseStore(tmp_path / "cases.db")
    await store.start()
    world = World(store, standin, sink_config(standin, tmp_path, create="iotalert"))
    await world.runner.start()
    (case_id,) = await world.open(1)
    await world.mirror()
    alerts = {r[KEY]: r for r in world.service.tables["msdyn_iotalerts"].rows.values()}
    assert list(alerts) == [case_id] and world.service.incidents() == {}
    assert alerts[case_id]["msdyn_deviceid"] == "s/t0"
    await store.act(case_id, "resolve", actor="eva", now=T0, text="dried out")
    await world.mirror()
    alert = world.service.tables["msdyn_iotalerts"].rows[alerts[case_id]["msdyn_iotalertid"]]
    assert alert["statecode"] == 1
    notes = world.service.notes(alert["msdyn_iotalertid"])
    assert len(notes) == 1 and "dried out" in notes[0]["notetext"]
    await world.sink.aclose()
    await store.aclose()


async def test_signing_in_with_a_certificate_instead_of_a_secret(tmp_path, standin):
    client_cert = standin.service.ca.issue_cert("husvakt-app", key_type=trustme.KeyType.RSA)
    pem = tmp_path / "husvakt-app.pem"
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    standin.service.certificate = client_cert.cert_chain_pems[0].bytes()
    config = sink_config(standin, tmp_path, client_secret_file=None, certificate_file=pem)
    store = SqliteCaseStore(tmp_path / "cases.db")
    await store.start()
    world = World(store, standin, config)
    await world.runner.start()
    (case_id,) = await world.open(1)
    assert await world.mirror() == 1
    assert list(world.service.incidents()) == [case_id]
    await world.sink.aclose()
    await store.aclose()


def test_without_the_dynamics_extra_it_says_what_to_install(monkeypatch, tmp_path):
    import importlib.util

    from casebridge.errors import SinkSetupError
    from husvakt.assemble import dynamics_client

    found = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "msal" else found(name, *a)
    )
    secret = tmp_path / "s"
    secret.write_text("x")
    config = DynamicsSinkConfig(
        id="d",
        type="dynamics",
        url="https://org.example",
        tenant="t",
        client_id=CLIENT,
        client_secret_file=secret,
    )
    with pytest.raises(SinkSetupError, match=r"pip install 'husvakt\[dynamics\]'"):
        dynamics_client(config)


async def test_sinks_status_and_a_one_shot_sync_say_how_far_behind_it_is(tmp_path, standin):
    account = standin.service.add("accounts", name="Skolan")
    config = config_file(tmp_path, standin, account)
    store = SqliteCaseStore(tmp_path / "cases.db")
    await store.start()
    world = World(store, standin, sink_config(standin, tmp_path))
    await world.open(2)
    await world.sink.aclose()
    await store.aclose()
    await standin.stop()
    code, out = await husvakt("sinks", "sync", "--config", str(config))
    assert code == 1 and "dynamics: 0 case(s) mirrored, 2 waiting" in out, out
    code, out = await husvakt("sinks", "status", "--config", str(config))
    assert code == 0 and "dynamics (dynamics): 2 case(s) waiting" in out, out
    assert "UNAVAILABLE since" in out and "Connection refused" in out, out
    await standin.start()
    code, out = await husvakt("sinks", "sync", "--config", str(config))
    assert code == 0 and "dynamics: 2 case(s) mirrored, 0 waiting" in out, out
    code, out = await husvakt("sinks", "status", "--config", str(config))
    assert "UNAVAILABLE" not in out and "0 case(s) waiting" in out, out
    assert len(standin.service.incidents()) == 2
    code, out = await husvakt("sinks", "sync", "--config", str(config), "--sink", "nope")
    assert code == 1 and "no such sink" in out
