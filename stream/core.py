"""Where each gateway and sensor stands, and how one reading, status or tick moves it.

Both engines keep their state as one `GatewayTrack` per (site, gateway): the embedded engine in
a dict persisted to SQLite, the Faust engine in a Table keyed like the readings topic, so a
gateway's readings and its state always live in the same partition. Everything here is plain
data and functions of it; the decisions are `stream.rules`.

Per gateway, `seq` only grows: a reading whose seq is not above the highest one seen is a
duplicate (a batch sent again after a lost acknowledgement), unless it is also newer than
anything seen, which means the gateway started numbering again (a new outbox). Batches name the
outbox that numbered them, so a new outbox is recognised by its id as well.

Time is the receiver's to trust: a reading dated more than `max_skew` ahead of `now` is refused
(`clock_ahead`) and raises a `gateway_clock` case for its gateway; one dated a little ahead is
taken as measured `now`. So no reading moves a sensor's or a gateway's clock past `now`, and
whatever a wild timestamp or seq did heals with the next genuine reading.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson

from gateway.models import Reading
from stream.kinds import kind_of_state, state_kind
from stream.kinds.base import dec_episode as _dec_episode
from stream.kinds.base import enc_episode as _enc_episode
from stream.kinds.base import opt_micros as _t
from stream.kinds.base import opt_time as _d
from stream.kinds.base import within_micros
from stream.kinds.offline import OfflineRule
from stream.models import Alarm, AlarmState
from stream.rules import (
    Episode,
    FaultState,
    OfflineState,
    RiseState,
    Rules,
    State,
    gateway_back,
    gateway_tick,
    micros,
    tick,
)
from stream.table import RuleTable

__all__ = [
    "GatewayTrack",
    "ReadingOutcome",
    "SensorTrack",
    "decode_sensor",
    "decode_track",
    "encode_sensor",
    "encode_track",
    "micros",
    "on_reading",
    "on_status",
    "on_tick",
    "sensor_ids",
    "watch",
]

log = logging.getLogger("husvakt.stream")

ReadingOutcome = Literal[
    "evaluated", "duplicate", "out_of_order", "seq_reset", "clock_ahead", "seq_jump"
]

#: The largest step of `seq` accepted within one outbox: a gateway cannot have thinned more
#: than this many readings between two batches, so a larger step is a forged or corrupt seq.
MAX_SEQ_JUMP = 1_000_000_000

#: The id of the maintenance rule that raises `gateway_clock` (it has no row in the table).
CLOCK_RULE = "gateway-clock"


@dataclass(slots=True)
class SensorTrack:
    kind: str
    last_ts: datetime | None = None
    states: dict[str, State] = field(default_factory=dict)
    #: the seq of the last reading applied: a sensor's state saved ahead of its gateway's
    #: (the Faust table writes them apart) is not advanced twice by the same reading
    last_seq: int = 0
    #: the rules `table` gives this sensor for readings of `kind` (not persisted): looked up
    #: once, not per reading
    ruled: tuple[RuleTable, str, Rules] | None = field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class GatewayTrack:
    """One gateway: its seq watermark, when it was last heard from, its offline episode, and
    the rule states of its sensors."""

    site: str
    gateway: str
    max_seq: int = 0
    newest_ts: datetime | None = None
    contact: datetime | None = None
    said_offline: datetime | None = None
    back_at: datetime | None = None
    episode: Episode | None = None
    sensors: dict[str, SensorTrack] = field(default_factory=dict)
    outbox: str | None = None
    clock_episode: Episode | None = None
    #: sensors whose state changed since the state store last saved them (not persisted)
    changed: set[str] = field(default_factory=set, compare=False, repr=False)


def _contact(
    gw: GatewayTrack, table: RuleTable, now: datetime, *, watch_gateway: bool
) -> list[Alarm]:
    if gw.contact is None or gw.contact < now:
        gw.contact = now
    gw.said_offline = None
    if gw.episode is None:
        return []
    return _back(gw, table, now, watch_gateway=watch_gateway)


def _back(gw: GatewayTrack, table: RuleTable, now: datetime, *, watch_gateway: bool) -> list[Alarm]:
    """The gateway, offline, is heard from again: its episode ends."""
    assert gw.episode is not None
    rule = table.gateway_rule(gw.site, gw.gateway)
    episode, gw.episode, gw.back_at = gw.episode, None, now
    if rule is None or not watch_gateway:
        return []
    return [gateway_back(episode, rule, now, site=gw.site, gateway=gw.gateway)]


def _clock_alarm(
    gw: GatewayTrack, what: AlarmState, ahead: float, skew: float, now: datetime
) -> Alarm:
    assert gw.clock_episode is not None
    return Alarm(
        episode=gw.clock_episode.id,
        site=gw.site,
        sensor=gw.gateway,
        condition="gateway_clock",
        state=what,
        severity="warning",
        value=round(ahead, 1),
        threshold=skew,
        rule=CLOCK_RULE,
        started_at=gw.clock_episode.since,
        ts=now,
        reason=gw.clock_episode.reason,
    )


def _check_clock(
    gw: GatewayTrack, reading: Reading, now: datetime, max_skew: float
) -> tuple[list[Alarm], Reading | None]:
    """The reading as the rules may see it (never later than `now`), or None when it is dated
    too far ahead; and the gateway_clock alarm this raised or cleared. `on_reading` calls it
    only outside the common case (not dated ahead, and no clock trouble to clear)."""
    ahead = (reading.ts - now).total_seconds()
    if ahead > max_skew:
        if gw.clock_episode is not None:
            return [], None
        since = now
        reason = (
            f"readings dated {ahead:.0f} s ahead of the server's clock (more than "
            f"{max_skew:g} s): they are refused until the gateway's clock is right"
        )
        gw.clock_episode = Episode(
            f"{CLOCK_RULE}:{gw.site}:{gw.gateway}:{since.strftime('%Y%m%dT%H%M%SZ')}",
            since,
            "warning",
            reason,
        )
        return [_clock_alarm(gw, "raised", ahead, max_skew, now)], None
    alarms: list[Alarm] = []
    if gw.clock_episode is not None:
        alarms.append(_clock_alarm(gw, "cleared", max(ahead, 0.0), max_skew, now))
        gw.clock_episode = None
    if ahead > 0:
        reading = reading.model_copy(update={"ts": now})
    return alarms, reading


def on_reading(  # noqa: PLR0912 - the clock's common case inline: a call per reading costs
    gw: GatewayTrack,
    reading: Reading,
    table: RuleTable,
    now: datetime,
    *,
    late_after: float,
    watch_gateway: bool = True,
    max_skew: float = 300.0,
    outbox: str | None = None,
) -> tuple[list[Alarm], ReadingOutcome]:
    """Apply one reading of this gateway: its clock, dedup by seq, order per sensor, then the
    rules. `outbox` is the id of the outbox that numbered the reading's batch, if it said.

    Each field of the reading is read once: reading a pydantic model's attribute costs about
    what a call does (its class hooks attribute lookup, so Python cannot specialise it)."""
    ts, seq = reading.ts, reading.seq
    if gw.clock_episode is None and ts <= now and max_skew >= 0:
        alarms: list[Alarm] = []  # not dated ahead, and no clock trouble to clear
    else:
        alarms, checked = _check_clock(gw, reading, now, max_skew)
        if checked is None:
            return alarms, "clock_ahead"
        reading, ts = checked, checked.ts
    outcome: ReadingOutcome = "evaluated"
    if outbox is not None and outbox != gw.outbox:
        if gw.outbox is not None:
            log.warning(
                "gateway %s/%s uplinks from a new outbox (%s); its numbering starts again",
                gw.site,
                gw.gateway,
                outbox,
            )
            outcome = "seq_reset"
        gw.outbox, gw.max_seq, gw.newest_ts = outbox, 0, None
    newest = gw.newest_ts
    if newest is not None:
        if seq > gw.max_seq + MAX_SEQ_JUMP:
            return alarms, "seq_jump"
        if seq <= gw.max_seq:
            if ts <= newest:
                return [], "duplicate"
            log.warning(
                "gateway %s/%s numbers its readings from %d again (was at %d): a new outbox?",
                gw.site,
                gw.gateway,
                seq,
                gw.max_seq,
            )
            outcome = "seq_reset"
    gw.max_seq = seq
    if newest is None or ts > newest:
        gw.newest_ts = ts
    if gw.contact is None or gw.contact < now:  # heard from (`_contact`, its call saved)
        gw.contact = now
    gw.said_offline = None
    if gw.episode is not None:
        alarms.extend(_back(gw, table, now, watch_gateway=watch_gateway))
    name, kind = reading.sensor, reading.kind
    sensor = gw.sensors.get(name)
    if sensor is None:
        sensor = gw.sensors[name] = SensorTrack(kind=kind)
    else:
        last_ts = sensor.last_ts
        if last_ts is not None and ts <= last_ts:
            if ts < last_ts:
                return alarms, "out_of_order"
            if seq == sensor.last_seq:
                return alarms, "duplicate"
    gw.changed.add(name)
    sensor.last_ts, sensor.last_seq = ts, seq
    ruled = sensor.ruled
    if ruled is not None and ruled[0] is table and ruled[1] == kind:
        rules = ruled[2]
    else:
        rules = table.rules_for(reading.site, name, kind)
        sensor.ruled = (table, kind, rules)
    # `evaluate_sensor` without its call: the table's rules carry their compiled pass
    produced = rules.sensor_pass(sensor.states, reading, now, late_after)
    if produced:
        alarms.extend(produced)
    table.note(reading, name)
    return alarms, outcome


def on_status(
    gw: GatewayTrack, online: bool, ts: datetime, table: RuleTable, now: datetime
) -> list[Alarm]:
    """The gateway's retained status: `offline` is its last will (raise at once). The will is
    written when the gateway connects, so its `ts` says nothing about when it went away: the
    episode starts when the broker delivered it."""
    if online:
        return _contact(gw, table, now, watch_gateway=True)
    if gw.contact is None:
        gw.contact = min(ts, now)
    if gw.said_offline is None:
        gw.said_offline = now
    return on_tick(gw, table, now)


def on_tick(
    gw: GatewayTrack, table: RuleTable, now: datetime, *, watch_gateway: bool = True
) -> list[Alarm]:
    """Time passed: gateway and sensor offline rules."""
    alarms: list[Alarm] = []
    rule = table.gateway_rule(gw.site, gw.gateway) if watch_gateway else None
    if rule is not None:
        gw.episode, raised = gateway_tick(
            gw.episode,
            rule,
            now,
            site=gw.site,
            gateway=gw.gateway,
            contact=gw.contact,
            said_offline=gw.said_offline,
        )
        alarms.extend(raised)
    gateway_down = gw.episode is not None
    #: per `after`: a sensor with a good reading since then has not been silent for longer,
    #: whatever its grace (`within_micros`: the same decision as `tick`'s seconds)
    horizons: dict[float, datetime] = {}
    for sensor_id, sensor in gw.sensors.items():
        rows = table.offline_rows_for(gw.site, sensor_id, sensor.kind)
        fault: bool | None = None
        for rule_row in rows:
            state = sensor.states.get(rule_row.id)
            if state.__class__ is OfflineState and state.episode is None:
                last = state.last_good
                horizon = horizons.get(rule_row.after)
                if horizon is None:
                    horizon = now - timedelta(microseconds=within_micros(rule_row.after))
                    horizons[rule_row.after] = horizon
                if last is not None and last >= horizon:
                    continue  # heard from within `after`: nothing to raise (the common case)
            if fault is None:
                fault = any(
                    isinstance(s, FaultState) and s.episode is not None
                    for s in sensor.states.values()
                )
            if state is None:
                state = OfflineState()
            new, produced = tick(
                state,
                rule_row,
                now,
                site=gw.site,
                sensor=sensor_id,
                held=gateway_down or fault,
                grace_from=gw.back_at,
            )
            if new is not state:
                sensor.states[rule_row.id] = new
                gw.changed.add(sensor_id)
            alarms.extend(produced)
    return alarms


def watch(gw: GatewayTrack, sensor: str, kind: str, table: RuleTable, now: datetime) -> None:
    """Expect `sensor` from this gateway from `now` on, so that a sensor that never reports
    still goes offline (and a gateway that never connects, too)."""
    if gw.contact is None:
        gw.contact = now
    track = gw.sensors.setdefault(sensor, SensorTrack(kind=kind))
    gw.changed.add(sensor)
    for rule in table.rules_for(gw.site, sensor, kind):
        if isinstance(rule, OfflineRule) and rule.id not in track.states:
            track.states[rule.id] = OfflineState(now)


# --- persistence: JSON-able dicts, exact to the microsecond -------------------------------------


def _enc_state(s: State, *, samples: bool = True) -> dict[str, Any]:
    kind = kind_of_state(s)
    assert kind.encode is not None
    return kind.encode(s, samples)


def _dec_state(d: dict[str, Any]) -> State:
    try:
        kind = state_kind(d["t"])
    except KeyError:
        raise ValueError(f"unknown rule state kind {d.get('t')!r}") from None
    assert kind.decode is not None
    state: State = kind.decode(d)
    return state


def _enc_sensor(s: SensorTrack, *, samples: bool = True) -> dict[str, Any]:
    return {
        "kind": s.kind,
        "last_ts": _t(s.last_ts),
        "last_seq": s.last_seq,
        "states": {k: _enc_state(v, samples=samples) for k, v in s.states.items()},
    }


def _dec_sensor(s: dict[str, Any]) -> SensorTrack:
    return SensorTrack(
        kind=s["kind"],
        last_ts=_d(s["last_ts"]),
        states={k: _dec_state(v) for k, v in s["states"].items()},
        last_seq=s.get("last_seq", 0),
    )


def _dumps(body: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON. orjson, because every sensor a batch touched is saved after it:
    a tenth of the cost of the standard library's encoder (its values are finite — readings
    are — so its writing NaN as null never arises)."""
    return orjson.dumps(body)


def encode_track(gw: GatewayTrack, *, sensors: bool = True) -> bytes:
    """The whole track; without `sensors`, the gateway's own part and the ids of its sensors
    (the stores keep each sensor's state apart: a SQLite row, a Faust table key)."""
    return _dumps(
        {
            "v": 1,
            "site": gw.site,
            "gateway": gw.gateway,
            "max_seq": gw.max_seq,
            "newest_ts": _t(gw.newest_ts),
            "contact": _t(gw.contact),
            "said_offline": _t(gw.said_offline),
            "back_at": _t(gw.back_at),
            "episode": _enc_episode(gw.episode),
            "outbox": gw.outbox,
            "clock_episode": _enc_episode(gw.clock_episode),
            "sensors": {sid: _enc_sensor(s) for sid, s in gw.sensors.items()} if sensors else {},
            "sensor_ids": [] if sensors else list(gw.sensors),
        }
    )


def sensor_ids(data: bytes | str) -> list[str]:
    """The ids of the sensors whose states a gateway's own part (`sensors=False`) names."""
    ids = orjson.loads(data).get("sensor_ids", [])
    return [i for i in ids if isinstance(i, str)]


def decode_track(data: bytes | str) -> GatewayTrack:
    d = orjson.loads(data)
    if d.get("v") != 1:
        raise ValueError(f"rule state of version {d.get('v')!r}; this husvakt reads version 1")
    return GatewayTrack(
        site=d["site"],
        gateway=d["gateway"],
        max_seq=d["max_seq"],
        newest_ts=_d(d["newest_ts"]),
        contact=_d(d["contact"]),
        said_offline=_d(d["said_offline"]),
        back_at=_d(d["back_at"]),
        episode=_dec_episode(d["episode"]),
        outbox=d.get("outbox"),
        clock_episode=_dec_episode(d.get("clock_episode")),
        sensors={sid: _dec_sensor(s) for sid, s in d["sensors"].items()},
    )


def encode_sensor(track: SensorTrack, *, samples: bool = False) -> bytes:
    """One sensor's state; without `samples`, without its rate-of-rise samples (the SQLite
    store keeps those in a log of their own, so that a reading costs one appended sample, not
    the whole window)."""
    return _dumps(_enc_sensor(track, samples=samples))


def decode_sensor(
    data: bytes | str, samples: Mapping[str, Sequence[tuple[int, float]]] | None = None
) -> SensorTrack:
    """A sensor's state, with each rate-of-rise state's samples (µs since the epoch, value) by
    rule id from the store's log (None: the samples encoded with it)."""
    track = _dec_sensor(orjson.loads(data))
    if samples is None:
        return track
    for rule_id, state in track.states.items():
        if isinstance(state, RiseState):
            track.states[rule_id] = RiseState.of_micros(
                ((int(t), float(v)) for t, v in samples.get(rule_id, ())),
                state.episode,
                state.pushed,
            )
    return track
