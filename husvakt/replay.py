"""Replay: a scenario or a recorded trace through the real rules and case bridge, on a virtual
clock, as fast as the machine allows — the same output every run.

Readings arrive when the gateway would have uplinked them: at once, or — during an uplink
outage — in order when the link comes back, so the rules see them late, as in production.
Escalations and notifications are stepped on the same clock; notifications are recorded, not
sent.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import os
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from casebridge.config import SmtpConfig
from casebridge.history import ReadingHistory
from casebridge.models import Case, CaseEvent, Delivery, User
from casebridge.notify import Escalator, Notifier
from casebridge.readings import ReadingArchive
from casebridge.store import CaseStore
from casebridge.store.sql import MemoryCaseStore
from firmware_sim import encode
from firmware_sim.scenario import Output, Scenario
from gateway.config import ModbusPoint, MqttPoint, SensorConfig, SerialPortConfig
from gateway.configfile import load_model, read_yaml
from gateway.models import Reading, format_ts
from gateway.normalize import Sample, normalize
from gateway.protocols import Decoded
from gateway.protocols.modbus import TIMEOUT, decode_answer
from gateway.protocols.mqtt import MqttCodec
from gateway.protocols.onewire import decode_w1
from gateway.protocols.serial import SerialCodec
from gateway.wire import WireError, decode_trace_line
from husvakt.assemble import case_desk, rule_engine
from husvakt.config import HusvaktConfig
from stream.engine import EmbeddedEngine
from stream.models import Alarm

__all__ = [
    "Arrival",
    "Expectations",
    "ReplayResult",
    "VirtualClock",
    "arrivals_from_scenario",
    "arrivals_from_trace",
    "arrivals_in_worker",
    "compare",
    "load_expectations",
    "load_scenario_file",
    "replay",
    "replay_path",
    "scenario_arrivals",
]

TICK = timedelta(minutes=1)
#: The most readings of one instant evaluated as one batch.
REPLAY_BATCH = 5_000


class VirtualClock:
    """Time that moves only when the replay moves it."""

    def __init__(self, start: datetime) -> None:
        self.value = start

    def now(self) -> datetime:
        return self.value

    async def sleep(self, seconds: float) -> None:
        self.value += timedelta(seconds=seconds)


class Arrival(NamedTuple):
    """A reading as the rules receive it: `at` is when it arrives, `reading.ts` when measured.
    Ordered by `at`, then `order` (unique within a replay, so readings are never compared)."""

    at: datetime
    order: int
    reading: Reading


class RecordingChannel:
    """A notification channel that records instead of sending (replays reach nobody)."""

    def __init__(self, log: list[tuple[datetime, Delivery]], clock: VirtualClock) -> None:
        self._log = log
        self._clock = clock

    async def send(self, delivery: Delivery) -> None:
        self._log.append((self._clock.now(), delivery))


#: The pattern of the `NAME VALUE` lines simulated serial devices print.
_SERIAL = SerialPortConfig.model_fields["pattern"].default


def _raw(output: Output, sensor: SensorConfig) -> Sample | None:
    """A device output as the gateway's source would have handed it on: encoded as the device
    sends it (`firmware_sim.encode`) and decoded by the protocol's codec, as a live gateway
    decodes it (None: what the source quarantines, or silence)."""
    ts = output.when
    if output.protocol == "onewire":  # the kernel's file holds °C
        return Sample.of(decode_w1(sensor.id, encode.w1_slave(output)), ts)
    number = encode.shown(output)
    # the device holds the number in its own units; the sensor's scale and offset undo that
    raw = None if number is None else (number - sensor.offset) / sensor.scale
    if output.protocol == "modbus":
        point = sensor.source if isinstance(sensor.source, ModbusPoint) else _MODBUS_INT16
        if output.fault == "modbus-timeout":
            return Sample(sensor.id, ts, fault=TIMEOUT)
        if raw is None:
            code = encode.MODBUS_DEVICE_FAILURE
            return Sample.of(decode_answer(sensor.id, point, None, code), ts)
        words = encode.modbus_words(raw, point.data_type, point.word_order, scale=1.0)
        return Sample.of(decode_answer(sensor.id, point, words), ts)
    if output.protocol == "serial":
        line = encode.serial_line(output.sensor, output, raw)
        codec = _serial_codec(output.sensor, sensor.id)
        decoded = None if line is None else codec.decode(line)
        return Sample.of(decoded, ts) if isinstance(decoded, Decoded) else None
    printed = encode.text(output, raw)
    if printed is None:
        return None  # the device publishes nothing
    decoded = _mqtt_round_trip(output.format, output.path, output.state, printed)
    if decoded is None:
        return None
    return Sample(sensor.id, ts, decoded.value, decoded.fault, None, decoded.state)


@functools.lru_cache(maxsize=65536)
def _mqtt_round_trip(fmt: str, path: str | None, state: bool, printed: str) -> Decoded | None:
    """What a gateway's codec decodes from the message a device of this shape publishes for
    what it prints (None: what the source quarantines). A function of these alone — the
    message is `encode.mqtt_payload`'s, the codec the one of such a device — so a replay
    encodes and decodes each distinct one once, not each of a day's million readings."""
    message = encode.mqtt_payload(fmt, printed, path, state)
    decoded = _mqtt_codec("device", "sensor", fmt, path).decode("device", message.encode())
    return decoded if isinstance(decoded, Decoded) else None


_MODBUS_INT16 = ModbusPoint(type="modbus", device="sim", address=0)


@functools.lru_cache(maxsize=4096)
def _mqtt_codec(topic: str, sensor: str, fmt: str, path: str | None) -> MqttCodec:
    """The codec of a gateway configured for the device: its shape, and the key it publishes
    under when not the shape's own."""
    path = path or (encode.JSON_PATH if fmt == "json" else None)
    point = MqttPoint(type="mqtt", topic=topic, format=fmt, value_path=path)
    return MqttCodec({topic: (sensor, point)})


@functools.lru_cache(maxsize=4096)
def _serial_codec(name: str, sensor: str) -> SerialCodec:
    return SerialCodec(_SERIAL, {name: sensor})


def arrivals_from_scenario(
    scenario: Scenario, config: HusvaktConfig, counts: Counter[str]
) -> Iterator[Arrival]:
    """Normalise the scenario's outputs as the configured gateway would, and time their
    arrival, lazily and in arrival order: what is measured during an uplink outage arrives,
    in order, when the link is back."""
    assert config.gateway is not None, "checked by the caller"
    gateway = config.gateway
    sensors = {s.id: s for s in config.sensor_index().values()}
    outages = [
        (scenario.start + timedelta(seconds=a), scenario.start + timedelta(seconds=b))
        for a, b in scenario.outages("uplink")
    ]
    held: list[Arrival] = []
    seq = 0
    for output in scenario.outputs():
        while held and held[0].at <= output.when:
            yield held.pop(0)
        sensor = sensors.get(output.sensor)
        if sensor is None:
            counts["unknown_sensor"] += 1
            continue
        sample = _raw(output, sensor)
        if sample is None:
            counts["quarantined"] += 1
            continue
        seq += 1
        reading = normalize(
            sample, sensor, site=sensor.site or gateway.site, gateway=gateway.id, seq=seq
        )
        counts[reading.quality] += 1
        arrive = (
            next((end for start, end in outages if start <= output.when < end), None)
            if outages
            else None
        )
        if arrive is None:
            yield Arrival(output.when, seq, reading)
        else:
            held.append(Arrival(arrive, seq, reading))
    yield from held


def arrivals_from_trace(path: Path) -> list[Arrival]:
    """A trace recorded by `husvakt record`: JSON Lines of {"received": TS, "reading": {...}},
    in arrival order."""
    return sorted(_trace_lines(path))


def _trace_lines(path: Path) -> Iterator[Arrival]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = decode_trace_line(line)
            except WireError as exc:
                raise ValueError(f"{path}:{number}: not a trace line ({exc})") from exc
            yield Arrival(entry.received, number, entry.reading)


class ReplayResult(BaseModel):
    """Everything a replay produced, in a deterministic order."""

    model_config = ConfigDict(frozen=True)

    name: str
    counts: dict[str, int]
    cases: list[Case]
    timelines: dict[str, list[CaseEvent]]
    alarms: list[Alarm]
    notifications: list[dict[str, str]]

    def case_late(self, case: Case) -> bool:
        first = next(
            (
                a
                for a in self.alarms
                if (a.site, a.sensor, a.condition) == (case.site, case.sensor, case.condition)
                and a.state != "cleared"
            ),
            None,
        )
        return bool(first and first.late)

    def render(self) -> str:
        c = self.counts
        lines = [
            f"replay {self.name}: {c.get('good', 0)} readings, {c.get('fault', 0)} fault readings, "
            f"{c.get('quarantined', 0)} quarantined, {len(self.alarms)} alarms "
            f"({sum(a.late for a in self.alarms)} late)",
            "",
            f"cases ({len(self.cases)}):",
        ]
        for case in self.cases:
            lines.append(
                f"  {case.id}  {case.site}/{case.sensor}  {case.condition}  {case.severity}  "
                f"team {case.team} {case.draft.priority}  opened {format_ts(case.opened_at)}"
                + ("  late" if self.case_late(case) else "")
            )
            lines.extend(
                f"      {format_ts(e.at)}  {e.kind:<19} {e.text}"
                for e in self.timelines[case.id]
                if e.kind not in ("notification_sent",)
            )
        lines.append("")
        lines.append(f"notifications ({len(self.notifications)}):")
        lines.extend(
            f"  {n['at']}  {n['channel']:<7} {n['recipient']:<28} {n['subject']}"
            for n in self.notifications
        )
        return "\n".join(lines) + "\n"


async def _seed_users(store: CaseStore, config: HusvaktConfig, now: datetime) -> None:
    """Every team member is a user who gets e-mail, so a replay shows who would be told."""
    for member in sorted({m for t in config.teams for m in t.members}):
        if await store.get_user(member) is None:  # a kept store may know them already
            await store.add_user(
                User(id=member, name=member, email=f"{member}@replay.invalid"), now=now
            )


async def _feed(
    arrivals: Iterable[Arrival],
    engine: EmbeddedEngine,
    clock: VirtualClock,
    remember: Callable[[Reading], None],
    step_until: Callable[[datetime], Awaitable[None]],
) -> None:
    """Readings that arrive at the same instant (a gateway's uplink batch, a scan of many
    sensors) are evaluated as one batch, as the engine gets them in service; time-based work
    runs between instants."""
    group: list[Reading] = []
    stepped: datetime | None = None
    for arrival in arrivals:
        if group and (arrival.at != clock.value or len(group) >= REPLAY_BATCH):
            await engine.process_batch(group)
            group = []
        if arrival.at != stepped:  # stepping to the same instant again does nothing
            await step_until(arrival.at)
            stepped = arrival.at
        clock.value = arrival.at
        remember(arrival.reading)
        group.append(arrival.reading)
    if group:
        await engine.process_batch(group)


class _Due:
    """Deliveries and escalations on the replay's clock, run in every minute in which one
    falls due — the store is asked when the next one does, again only after it ran or after
    alarms were handed off (a day of a thousand quiet sensors asked it twice a minute)."""

    def __init__(self, store: CaseStore, escalator: Escalator, notifier: Notifier) -> None:
        self._store, self._escalator, self._notifier = store, escalator, notifier
        self._known = False
        self._next: datetime | None = None

    def changed(self) -> None:
        """Alarms are being handed off: cases, deliveries and escalations may change."""
        self._known = False

    async def run(self, now: datetime) -> None:
        if self._known and (self._next is None or self._next > now):
            return  # nothing falls due this minute
        await self._escalator.run_due(now)
        await self._notifier.run_due(now)
        self._next, self._known = await self._store.next_due(), True


def _remember(history: ReadingHistory, archive: ReadingArchive | None) -> Callable[[Reading], None]:
    def remember(reading: Reading) -> None:
        history.add(reading)
        if archive is not None:
            archive.add((reading,))

    return remember


async def replay(
    *,
    name: str,
    config: HusvaktConfig,
    arrivals: Iterable[Arrival],
    counts: Counter[str],
    until: datetime | None = None,
    watched: Collection[str] = (),
    store: CaseStore | None = None,
) -> ReplayResult:
    """Run arrivals — in arrival order — through the embedded rules and the case bridge.

    `watched`: configured sensors expected from the start (they go offline if they never report;
    a scenario watches the devices it simulates)."""
    stream = iter(arrivals)
    first = next(stream, None)
    start = first.at if first else (until or datetime(1970, 1, 1, tzinfo=UTC))
    clock = VirtualClock(start)
    keep = store is not None
    if store is None:
        store = MemoryCaseStore()
    await store.start()
    await _seed_users(store, config, start)
    notify = config.notify.model_copy(update={"smtp": config.notify.smtp or SmtpConfig()})
    sent: list[tuple[datetime, Delivery]] = []
    channel = RecordingChannel(sent, clock)
    sensors = config.sensor_index()
    alarms: list[Alarm] = []
    history = ReadingHistory()
    # a store the caller keeps keeps the readings too (its site pages show them)
    archive = ReadingArchive(store, limit=50_000_000)
    channels = {"email": channel, "webhook": channel}
    desk = case_desk(
        config,
        store=store,
        clock=clock,
        history=history,
        channels=channels,
        notify=notify,
        mirror=False,
    )

    due = _Due(store, desk.escalator, desk.notifier)

    async def hand_off(batch: Sequence[Alarm]) -> None:
        due.changed()
        await desk.hand_off(batch)
        alarms.extend(batch)

    engine = rule_engine(config, clock=clock, sink=hand_off, watch_gateways=True, replay=True)
    if config.gateway is not None:
        for (site, sensor), entry in sensors.items():
            if sensor in watched:
                engine.watch(site, config.gateway.id, [(sensor, entry.kind)])
    next_tick = start

    async def step_until(when: datetime) -> None:
        nonlocal next_tick
        while next_tick <= when:
            clock.value = next_tick
            await engine.tick()
            await due.run(next_tick)
            next_tick += TICK

    try:
        arrivals = itertools.chain([first] if first else [], stream)
        await _feed(
            arrivals, engine, clock, _remember(history, archive if keep else None), step_until
        )
        end = max(until or start, clock.value)
        await step_until(end)
        await archive.flush()  # nothing to write unless a kept store keeps readings
        cases = await store.list_cases()
        timelines = {c.id: await store.timeline(c.id) for c in cases}
    finally:
        if not keep:
            await store.aclose()
    merged = Counter(counts)
    merged.update({f"engine_{k}": v for k, v in engine.counts.items()})
    return ReplayResult(
        name=name,
        counts=dict(sorted(merged.items())),
        cases=cases,
        timelines=timelines,
        alarms=alarms,
        notifications=[
            {
                "at": format_ts(at),
                "channel": d.channel,
                "recipient": d.recipient,
                "subject": d.subject,
            }
            for at, d in sent
        ],
    )


def load_scenario_file(path: Path) -> Scenario:
    """A scenario file, with errors that name file, line and field."""
    return load_model(Scenario, read_yaml(path))


class ExpectedCase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sensor: str
    condition: str
    severity: str | None = None
    team: str | None = None
    late: bool | None = None


class Expectations(BaseModel):
    """What a replay must produce. Only what is named is checked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cases: tuple[ExpectedCase, ...] = ()
    case_count: int | None = Field(default=None, description="defaults to the number of cases")
    notifications: int | None = None
    late_alarms: int | None = None
    escalations: int | None = None


def load_expectations(path: Path) -> Expectations:
    return load_model(Expectations, read_yaml(path))


def _describe(case: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in case.items() if v is not None)


def compare(result: ReplayResult, expected: Expectations) -> list[str]:
    """Readable differences; empty when the replay met every expectation."""
    problems: list[str] = []
    actual = [
        {
            "sensor": c.sensor,
            "condition": c.condition,
            "severity": c.severity,
            "team": c.team,
            "late": result.case_late(c),
        }
        for c in result.cases
    ]
    unmatched = list(range(len(actual)))
    for want in expected.cases:
        wanted = want.model_dump(exclude_none=True)
        hit = next(
            (i for i in unmatched if all(actual[i][k] == v for k, v in wanted.items())), None
        )
        if hit is None:
            near = [
                a for a in actual if (a["sensor"], a["condition"]) == (want.sensor, want.condition)
            ]
            got = f" (got: {_describe(near[0])})" if near else ""
            problems.append(f"- missing case: {_describe(wanted)}{got}")
        else:
            unmatched.remove(hit)
    count = expected.case_count if expected.case_count is not None else len(expected.cases)
    if expected.case_count is None or len(actual) != count:
        # every case no expectation matched (with case_count: only when the count is off)
        problems.extend(f"+ unexpected case: {_describe(actual[i])}" for i in unmatched)
    if len(actual) != count:
        problems.append(f"  cases: expected {count}, got {len(actual)}")
    escalations = sum(e.kind == "escalated" for tl in result.timelines.values() for e in tl)
    for label, want_n, got_n in (
        ("notifications", expected.notifications, len(result.notifications)),
        ("late alarms", expected.late_alarms, sum(a.late for a in result.alarms)),
        ("escalations", expected.escalations, escalations),
    ):
        if want_n is not None and want_n != got_n:
            problems.append(f"  {label}: expected {want_n}, got {got_n}")
    return problems


async def replay_path(
    source: Path, config: HusvaktConfig, *, store: CaseStore | None = None
) -> ReplayResult:
    """Replay a scenario file (YAML) or a trace (JSON Lines, `.jsonl`) against `config`;
    into `store` when given (it is left open), else into a throwaway store."""
    if config.gateway is None:
        raise ValueError("the config has no 'gateway' section to replay through")
    counts: Counter[str] = Counter()
    if source.suffix in (".jsonl", ".json", ".trace"):
        return await replay(
            name=source.stem,
            config=config,
            arrivals=arrivals_from_trace(source),
            counts=counts,
            store=store,
        )
    scenario = load_scenario_file(source)
    missing = sensors_missing(scenario, config)
    if missing:
        raise ValueError(f"{source}: sensors not in the config: {', '.join(missing)}")
    return await replay(
        name=scenario.name,
        config=config,
        arrivals=scenario_arrivals(scenario, config, counts),
        counts=counts,
        until=scenario_end(scenario),
        watched={d.sensor for d in scenario.devices},
        store=store,
    )


def scenario_end(scenario: Scenario) -> datetime:
    return scenario.start + timedelta(seconds=scenario.duration)


def sensors_missing(scenario: Scenario, config: HusvaktConfig) -> Sequence[str]:
    known = {s.id for s in config.sensors}
    return [d.sensor for d in scenario.devices if d.sensor not in known]


# --- a scenario's devices in a worker process ---------------------------------------------------
#
# A scenario's device outputs simulated and normalised in a process of their own, while the
# replay's process runs the rules and the case bridge: on a machine of two cores or more a long
# replay takes about as long as the slower half, not as long as both. The worker runs
# `arrivals_from_scenario` itself and sends its arrivals, in order, in chunks over a pipe (a full
# pipe makes it wait: memory stays bounded); the replay gets exactly what the same generator
# gives in its own process, so its output is the same to the bit. A failure in the worker is
# raised in the replay with the worker's traceback; a replay that stops early stops the worker.

#: Device outputs from which a scenario is simulated in a worker process: below this, starting
#: one (its imports: about half a second) costs more than it saves.
WORKER_FROM = 200_000
#: Arrivals per message from the worker.
CHUNK = 2_000


def _outputs(scenario: Scenario) -> int:
    """About how many outputs the scenario's devices make."""
    return sum(int(scenario.duration // d.every) + 1 for d in scenario.devices)


def scenario_arrivals(
    scenario: Scenario, config: HusvaktConfig, counts: Counter[str]
) -> Iterator[Arrival]:
    """The scenario's arrivals: from a worker process when the scenario is long and the
    machine has a core to spare, else from this process."""
    if _outputs(scenario) >= WORKER_FROM and (os.cpu_count() or 1) > 1:
        return arrivals_in_worker(scenario, config, counts)
    return arrivals_from_scenario(scenario, config, counts)


def _produce(conn: Connection, scenario: Scenario, config: HusvaktConfig) -> None:
    """The worker: every arrival as plain values, in chunks; then its counts."""
    try:
        counts: Counter[str] = Counter()
        chunk: list[tuple[Any, ...]] = []
        for at, order, r in arrivals_from_scenario(scenario, config, counts):
            chunk.append(
                (at, order, (r.site, r.gateway, r.sensor, r.kind, r.value, r.unit, r.ts, r.seq,
                             r.quality, r.fault))
            )  # fmt: skip
            if len(chunk) >= CHUNK:
                conn.send(("arrivals", chunk))
                chunk = []
        conn.send(("arrivals", chunk))
        conn.send(("done", dict(counts)))
    except BaseException:  # noqa: BLE001 - whatever it was, the replay raises it
        conn.send(("failed", traceback.format_exc()))
    finally:
        conn.close()


def arrivals_in_worker(
    scenario: Scenario, config: HusvaktConfig, counts: Counter[str]
) -> Iterator[Arrival]:
    """`arrivals_from_scenario`, computed in a worker process (`counts` filled at the end)."""
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    receive, send = context.Pipe(duplex=False)
    worker = context.Process(
        target=_produce, args=(send, scenario, config), name="husvakt replay devices", daemon=True
    )
    worker.start()
    send.close()  # the worker's end: a worker that dies ends the pipe
    trusted, make = Reading.trusted, tuple.__new__
    try:
        while True:
            try:
                what, body = receive.recv()
            except EOFError:
                raise RuntimeError(
                    f"the replay's device simulation ended without a word "
                    f"(exit code {worker.exitcode})"
                ) from None
            if what == "arrivals":
                for at, order, fields in body:
                    yield make(Arrival, (at, order, trusted(*fields)))
            elif what == "done":
                counts.update(body)
                return
            else:
                raise RuntimeError(f"the replay's device simulation failed:\n{body}")
    finally:
        receive.close()
        if worker.is_alive():
            worker.terminate()
        worker.join()
