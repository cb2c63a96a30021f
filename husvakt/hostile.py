"""Hostile input, tried as an attacker or a broken device would send it: the corpus, and
`husvakt hostile`, which sends every entry over a real broker to a running `husvakt stream`
and proves after each that the process is alive, the input was quarantined, and a genuine
freezing reading still opens its case.

The corpus is data: each entry names its class (what the README's reliability section lists),
the topic it goes to and the bytes. Tests send the same corpus (and what hypothesis finds).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import aiomqtt

from gateway.models import Reading, format_ts
from gateway.wire import encode_batch, readings_topic, status_topic

if TYPE_CHECKING:
    from casebridge.store import CaseStore
    from husvakt.config import HusvaktConfig

__all__ = ["Hostile", "Tally", "check", "corpus", "genuine_frost", "run_corpus", "with_probes"]


@dataclass(frozen=True, slots=True)
class Hostile:
    """One hostile input: its class, where it goes (`readings`/`status`, or a whole topic)
    and its bytes."""

    kind: str
    topic: str
    payload: bytes
    #: False for input that is valid but heavy (it must be evaluated, not refused)
    refused: bool = True


def _reading(site: str, gateway: str, sensor: str, **over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "site": site,
        "gateway": gateway,
        "sensor": sensor,
        "kind": "temperature",
        "value": 21.0,
        "unit": "°C",
        "ts": format_ts(datetime.now(UTC)),
        "seq": 1,
        "quality": "good",
    }
    body.update(over)
    return body


def _reader_edges(readings: str, one: Callable[..., bytes]) -> Iterator[Hostile]:
    """Where the typed reader leaves a batch to the generic one (an empty time, the first of
    its batch, where the typed reader compares each time with the last one's), where the
    generic JSON reader hands over to the checked one (past int64, a key twice), and where its
    bounds look twice: more `[` and `{` than a batch may hold arrays and objects, all inside
    one string — counted again without the strings, the message is read, and the reading
    refused for its text."""
    yield Hostile("an empty time", readings, one(ts=""))
    yield Hostile("brackets inside strings", readings, one(quality="fault", fault="[{" * 40_000))
    yield Hostile("a number past int64", readings, one(seq=2**64))
    yield Hostile("a number past int64", readings, one(value=-(2**63) - 1))
    twice = one().replace(b'"value": 21.0', b'"value": 21.0, "value": NaN')
    yield Hostile("a key twice", readings, twice)


def corpus(site: str, gateway: str, sensor: str, *, now: datetime) -> Iterator[Hostile]:
    """Every class of hostile uplink input, aimed at a real site, gateway and sensor."""
    readings = readings_topic(site, gateway)
    status = status_topic(site, gateway)

    def batch(*items: dict[str, object]) -> bytes:
        return json.dumps({"readings": list(items)}).encode()

    def one(**over: object) -> bytes:
        return batch(_reading(site, gateway, sensor, **{"ts": format_ts(now), **over}))

    yield Hostile("not JSON", readings, b"{not json")
    yield Hostile("not UTF-8", readings, b"\xff\xfe[\x00")
    yield Hostile("empty payload", readings, b"")
    yield Hostile("deeply nested JSON", readings, b"[" * 100_000 + b"]" * 100_000)
    yield Hostile("deeply nested JSON", status, b'{"state":' + b"[" * 50_000 + b"]" * 50_000)
    yield Hostile("a number with 5,000 digits", readings, one(value=int("9" * 4000)))
    yield Hostile("a number with 5,000 digits", readings, b'[{"value": 1' + b"0" * 5000 + b"}]")
    yield from _reader_edges(readings, one)
    yield Hostile("NaN, Infinity, 1e309", readings, one().replace(b"21.0", b"NaN"))
    yield Hostile("NaN, Infinity, 1e309", readings, one().replace(b"21.0", b"1e309"))
    yield Hostile("NaN, Infinity, 1e309", readings, one().replace(b"21.0", b"-Infinity"))
    yield Hostile("timestamp overflow", readings, one(ts="0001-01-01T00:30:00+01:00"))
    yield Hostile("timestamp overflow", readings, one(ts="9999-12-31T23:59:59-01:00"))
    yield Hostile(
        "timestamp overflow", status, b'{"state":"online","ts":"0001-01-01T00:00:00+01:00"}'
    )
    yield Hostile("timestamp without zone", readings, one(ts="2026-01-15T02:00:00"))
    yield Hostile("NUL and control characters", readings, one(quality="fault", fault="crc\x00x"))
    yield Hostile("NUL and control characters", readings, one(kind="temp\x1b[2Jerature"))
    yield Hostile("lone surrogates", readings, one(quality="fault", fault="crc\ud800"))
    yield Hostile("lone surrogates", readings, one(unit="\udfff"))
    yield Hostile("bool as a number", readings, one(value=True))
    yield Hostile("bool as a number", readings, one(value=False))
    yield Hostile("numeric string", readings, one(value="3.5"))
    yield Hostile("numeric string", readings, one(seq="7"))
    yield Hostile("unbounded strings", readings, one(kind="k" * 100_000))
    yield Hostile("unbounded strings", readings, one(quality="fault", fault="f" * 100_000))
    yield Hostile("unbounded strings", readings, one(unit="u" * 5000))
    yield Hostile("too large", readings, b"[" + b" " * (17 * 1024 * 1024) + b"]")
    yield Hostile("too many readings", readings, json.dumps([1] * 50_001).encode())
    yield Hostile("wrong shape", readings, b'{"readings": {"a": 1}}')
    yield Hostile("wrong shape", readings, b"[1, 2, 3]")
    yield Hostile("wrong shape", status, b'{"state": "on fire", "ts": "2026-01-15T02:00:00Z"}')
    yield Hostile("wrong shape", status, b"[]")
    yield Hostile("another gateway's readings", readings, batch(_reading(site, "other-gw", sensor)))
    ghosts = [
        _reading(site, gateway, f"ghost-{i}", ts=format_ts(now), seq=10**6 + i) for i in range(200)
    ]
    yield Hostile("sensors not in the config", readings, batch(*ghosts))
    yield Hostile(
        "gateways not in the config",
        readings_topic(site, "ghost-gw"),
        batch(_reading(site, "ghost-gw", sensor, ts=format_ts(now))),
    )
    yield Hostile(
        "gateways not in the config",
        status_topic(site, "ghost-gw"),
        b'{"state":"offline","ts":"' + format_ts(now).encode() + b'"}',
    )
    yield Hostile(
        "sites not in the config",
        readings_topic("ghost-site", gateway),
        batch(_reading("ghost-site", gateway, sensor, ts=format_ts(now))),
    )
    yield Hostile(
        "a reading dated in the future",
        readings,
        one(ts=format_ts(now + timedelta(days=365)), seq=2),
    )
    yield Hostile("a seq far above the gateway's counter", readings, one(seq=2**62, value=22.0))
    yield Hostile(
        "a seq far above the gateway's counter",
        readings,
        one(seq=10**9 + 5 * 10**8, value=22.0),
        refused=False,  # within the accepted jump: evaluated, and the next genuine seq heals
    )
    yield Hostile("a kind the sensor does not have", readings, one(kind="humidity", unit="%"))
    yield Hostile("topics that are not husvakt's", "husvakt/v1/" + "x" * 300 + "/g/readings", b"[]")
    dense = [
        _reading(
            site,
            gateway,
            sensor,
            value=20.0 + i * 1e-4,
            ts=format_ts(now - timedelta(seconds=40) + timedelta(milliseconds=i)),
            seq=i + 10,
        )
        for i in range(30_000)
    ]
    yield Hostile(
        "30,000 readings 1 ms apart",
        readings,
        json.dumps({"outbox": "ob-dense", "readings": dense}).encode(),
        refused=False,
    )


def genuine_frost(
    site: str,
    gateway: str,
    sensor: str,
    *,
    now: datetime,
    seq: int,
    outbox: str = "ob-hostile-check",
) -> bytes:
    """One genuine freezing reading (1 °C, measured now) as a gateway uplinks it."""
    reading = Reading(
        site=site,
        gateway=gateway,
        sensor=sensor,
        kind="temperature",
        value=1.0,
        unit="°C",
        ts=now,
        seq=seq,
    )
    return encode_batch([reading], outbox=outbox)


@dataclass
class Tally:
    """Per class: inputs tried, handled (process alive, quarantined, the next genuine alarm
    opened its case) and failed, with the reasons of the failures."""

    tried: Counter[str]
    handled: Counter[str]
    failures: list[str]
    cpu_dense: float | None = None
    quarantined: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            "classes": {
                k: {"tried": t, "handled": self.handled[k], "failed": t - self.handled[k]}
                for k, t in self.tried.items()
            },
            "failures": self.failures,
            "cpu_dense_s": self.cpu_dense,
            "quarantined": self.quarantined,
        }

    def table(self) -> str:
        width = max(len(k) for k in self.tried) if self.tried else 10
        lines = [f"{'class':<{width}}  tried  handled  failed"]
        for kind, tried in self.tried.items():
            handled = self.handled[kind]
            lines.append(f"{kind:<{width}}  {tried:>5}  {handled:>7}  {tried - handled:>6}")
        total, ok = sum(self.tried.values()), sum(self.handled.values())
        lines.append(f"{'all':<{width}}  {total:>5}  {ok:>7}  {total - ok:>6}")
        if self.cpu_dense is not None:
            lines.append(
                f"\n30,000 readings 1 ms apart in one message: {self.cpu_dense:.2f} s of CPU"
            )
        lines.extend(f"FAILED: {f}" for f in self.failures)
        return "\n".join(lines)


async def run_corpus(
    *,
    config: HusvaktConfig,
    store: CaseStore,
    host: str,
    port: int,
    sensors: list[str],
    quarantined: Callable[[], int] | None = None,
    cpu: Callable[[], float] | None = None,
    patience: float = 30.0,
) -> Tally:
    """Send the corpus to a running `husvakt stream` on `host:port`, whose case store is `store`
    and whose config is `config`; after each input, a genuine freezing reading on a fresh
    sensor of `sensors` (with `freezing` hold 0) must open its case within `patience` s. Returns
    the tally. The process is taken as alive while it keeps opening those cases; with
    `quarantined` (the server's quarantine count), each refused input must also raise it."""
    gw = config.gateway
    assert gw is not None, "the corpus aims at the config's gateway"
    site, gateway = gw.site, gw.id
    target = sensors[0]
    tally = Tally(Counter(), Counter(), [])
    seq = 10**9  # far above anything the corpus sends, below the accepted jump
    probes = iter(sensors[1:])
    async with aiomqtt.Client(host, port, identifier="husvakt-hostile", timeout=patience) as client:
        for hostile in corpus(site, gateway, target, now=datetime.now(UTC)):
            tally.tried[hostile.kind] += 1
            before = quarantined() if quarantined else 0
            started = time.process_time()
            await client.publish(hostile.topic, hostile.payload, qos=1)
            probe = next(probes, None)
            if probe is None:
                tally.failures.append("not enough probe sensors in the config")
                break
            seq += 1
            await client.publish(
                readings_topic(site, gateway),
                genuine_frost(site, gateway, probe, now=datetime.now(UTC), seq=seq),
                qos=1,
            )
            try:
                await asyncio.wait_for(_case_for(store, site, probe), patience)
            except TimeoutError:
                tally.failures.append(f"{hostile.kind}: no case for {probe} within {patience:g} s")
                continue
            if hostile.kind.startswith("30,000"):
                # the heaviest message the server handled: this one
                tally.cpu_dense = cpu() if cpu else time.process_time() - started
            if quarantined is not None and hostile.refused != (quarantined() > before):
                what = "not quarantined" if hostile.refused else "quarantined, not evaluated"
                tally.failures.append(f"{hostile.kind}: {what}")
                continue
            tally.handled[hostile.kind] += 1
    return tally


async def _case_for(store: CaseStore, site: str, sensor: str) -> None:
    from casebridge.store import CaseFilter  # noqa: PLC0415 - the CLI loads it lazily

    # the store may belong to another process: nothing signals a new case, so look again
    while not any(  # noqa: ASYNC110
        c.sensor == sensor for c in await store.list_cases(CaseFilter(sites=[site]))
    ):
        await asyncio.sleep(0.05)


def with_probes(config: HusvaktConfig, count: int) -> tuple[HusvaktConfig, list[str]]:
    """`config` plus `count` probe thermometers on its gateway, tagged `probe`, whose freezing
    row holds 0 s: a 1 °C reading on one opens its case at once."""
    from gateway.config import MqttPoint, SensorConfig  # noqa: PLC0415
    from stream.config import ThresholdRule  # noqa: PLC0415

    assert config.gateway is not None, "the probes need the config's gateway"
    ids = [f"probe-{i:03d}" for i in range(count)]
    probes = tuple(
        SensorConfig(
            id=sensor_id,
            site=config.gateway.site,
            tags=("probe",),
            source=MqttPoint(type="mqtt", topic=f"probes/{sensor_id}"),
        )
        for sensor_id in ids
    )
    row = ThresholdRule(
        id="probe-freezing", condition="freezing", tag="probe", below=5, clear=7, hold=0
    )
    return config.model_copy(
        update={"sensors": config.sensors + probes, "rules": (*config.rules, row)}
    ), ids


async def check(*, config_path: Path, broker: tuple[str, int] | None, directory: Path) -> Tally:
    """`husvakt hostile`: the embedded stream server of `config_path` (stores in `directory`)
    on a broker (an embedded one unless given), the corpus sent to it, the tally returned."""
    from casebridge.store.sql import SqliteCaseStore  # noqa: PLC0415
    from gateway.clock import SystemClock  # noqa: PLC0415
    from gateway.config import MqttBrokerConfig  # noqa: PLC0415
    from husvakt.broker import EmbeddedBroker  # noqa: PLC0415
    from husvakt.config import load_config  # noqa: PLC0415
    from husvakt.server import EmbeddedServer  # noqa: PLC0415

    config = load_config(config_path)
    size = sum(1 for _ in corpus("s", "g", "t", now=datetime.now(UTC)))
    config, probes = with_probes(config, size + 1)
    async with contextlib.AsyncExitStack() as stack:
        if broker is None:
            embedded = await stack.enter_async_context(EmbeddedBroker())
            broker = (embedded.host, embedded.port)
        stream = config.stream.model_copy(
            update={
                "broker": MqttBrokerConfig(host=broker[0], port=broker[1]),
                "client_id": "husvakt-hostile-stream",
                "state": directory / "rule-state.db",
                "quarantine": directory / "quarantine.db",
            }
        )
        config = config.model_copy(update={"stream": stream})
        store = SqliteCaseStore(directory / "cases.db")
        await store.start()
        stack.push_async_callback(store.aclose)
        server = EmbeddedServer(config=config, clock=SystemClock(), store=store)
        stop = asyncio.Event()
        task = asyncio.create_task(server.run(stop))
        try:
            await asyncio.wait_for(server.subscriber.subscribed.wait(), 30)
            tally = await run_corpus(
                config=config,
                store=store,
                host=broker[0],
                port=broker[1],
                sensors=probes,
                quarantined=lambda: server.quarantine.total,
                cpu=lambda: server.subscriber.heaviest_cpu,
            )
        finally:
            stop.set()
            await task
        tally.quarantined = server.quarantine.counts
        return tally
