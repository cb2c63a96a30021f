"""The v1 wire format, sans I/O: every encode/decode pair between husvakt processes.

Transports (MQTT, Kafka, trace files) only move the bytes; this module alone knows their shape:

- a readings batch: `{"outbox": ID, "readings": [READING, ...]}` on
  `husvakt/v1/{site}/{gateway}/readings` and, unchanged, as a Kafka readings-topic message
  (a bare JSON array of readings, as older gateways send it, is still read);
- a gateway status: `{"state": "online"|"offline", "ts", "buffered", "thinned", "dropped"}`,
  retained on `…/status`, and on Kafka wrapped as `{"status": STATUS}`;
- a clock tick on Kafka: `{"tick": TS}`;
- a trace line (JSON Lines): `{"received": TS, "reading": READING}`;
- timestamps: RFC 3339, stored and compared in UTC.

Every decoder is bounded and strict, because everything on the wire is hostile until it has
passed here: payload size, nesting, readings per message, characters per number, string
lengths, timestamps within a plausible range; no booleans as numbers, no numeric strings, no
control characters. A batch decodes reading by reading: one bad reading is rejected with its
reason and the good readings of the batch go on. A batch whose every reading is valid — what
gateways send — is read by msgspec straight into typed fields and checked there; any other goes
to the generic reader, which alone decides what is refused and why.

    WireError (ValueError)   the message as a whole is unusable; `reason` is a short slug for
                             the quarantine, `str(exc)` says what was wrong
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
import orjson

from gateway.models import SLUG_PATTERN, Reading, format_ts

__all__ = [
    "LIMITS",
    "TOPIC_ROOT",
    "Batch",
    "Limits",
    "Rejected",
    "Status",
    "Tick",
    "TraceLine",
    "WireError",
    "decode_batch",
    "decode_kafka",
    "decode_status",
    "decode_trace_line",
    "encode_batch",
    "encode_bodies",
    "encode_kafka_status",
    "encode_reading",
    "encode_status",
    "encode_tick",
    "encode_trace_line",
    "gateway_topics",
    "kafka_key",
    "loads_bounded",
    "loads_strict",
    "parse_kafka_key",
    "parse_ts",
    "readings_topic",
    "status_topic",
    "topic_ids",
]


class WireError(ValueError):
    """A message that is not usable as a whole. `reason` is a short slug (`too-large`,
    `not-json`, `too-deep`, `shape`, `number`, `string`, `timestamp`, …)."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(detail)


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds every decode enforces. A gateway's batch is at most 10,000 readings (its
    `uplink.batch` allows no more), an ingest may join a few; a reading encodes in about 200
    bytes. At these bounds a message decodes in well under a second."""

    payload: int = 16 * 1024 * 1024
    readings: int = 50_000
    number_chars: int = 32
    kind: int = 32
    unit: int = 16
    fault: int = 64
    outbox: int = 64
    value: float = 1e12
    seq: int = 2**63 - 1
    earliest_year: int = 2000
    latest_year: int = 2200
    status: int = 4096
    trace_line: int = 4096


LIMITS = Limits()

_SLUG = re.compile(SLUG_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


# --- topics and keys ---------------------------------------------------------------------------


_LEAVES = ("readings", "status")
#: Every uplink topic starts here: `{TOPIC_ROOT}/{site}/{gateway}/readings` and `.../status`.
TOPIC_ROOT = "husvakt/v1"


def gateway_topics(site: str, gateway: str) -> str:
    """The filter over one gateway's uplink topics (what it alone may publish)."""
    return f"{TOPIC_ROOT}/{site}/{gateway}/#"


def readings_topic(site: str, gateway: str) -> str:
    return f"{TOPIC_ROOT}/{site}/{gateway}/readings"


def status_topic(site: str, gateway: str) -> str:
    return f"{TOPIC_ROOT}/{site}/{gateway}/status"


def topic_ids(topic: str) -> tuple[str, str]:
    """(site, gateway) of an uplink topic; WireError when it is not one with valid ids."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[:2] != TOPIC_ROOT.split("/") or parts[4] not in _LEAVES:
        raise WireError("topic", f"not a husvakt uplink topic: {topic[:120]!r}")
    site, gateway = parts[2], parts[3]
    if not (_SLUG.fullmatch(site) and _SLUG.fullmatch(gateway)):
        raise WireError("topic", f"site or gateway in {topic[:120]!r} is not a valid id")
    return site, gateway


def kafka_key(site: str, gateway: str) -> bytes:
    """Messages on the Kafka readings topic are keyed by gateway: a gateway's batches (and the
    rule state they update) stay in one partition, in order."""
    return f"{site}/{gateway}".encode()


# --- bounded JSON ------------------------------------------------------------------------------


def _check_length(text: str) -> None:
    if len(text) > LIMITS.number_chars:
        raise WireError(
            "number", f"a number of {len(text)} characters (at most {LIMITS.number_chars})"
        )


def _parse_float(text: str) -> float:
    _check_length(text)
    value = float(text)
    if not math.isfinite(value):
        raise WireError("number", f"{text} is not a finite number")
    return value


def _parse_int(text: str) -> int:
    _check_length(text)
    return int(text)


#: A JSON string, so that brackets inside strings are not counted as containers.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


#: A payload's shape in one pass (`_shape`): every character a JSON number is made of becomes a
#: zero, every bracket that opens an array or object a `[`, and every other character a space.
#: A number longer than an int64's 19 digits and sign is then a run of 20 zeros (a tenth of the
#: time a regular expression takes over a batch of timestamps and values), and the containers
#: are the `[`s (brackets inside strings too: counted again without the strings when too many).
_NUMBER_RUN = 20 * b"0"
_SHAPE = bytes(
    0x30 if c in b"-+.0123456789eE" else 0x5B if c in b"[{" else 0x20 for c in range(256)
)


def _shape(raw: bytes) -> bytes:
    return raw.translate(_SHAPE)


def _containers(raw: bytes) -> int:
    return _shape(raw).count(b"[")


def _reject_constant(name: str) -> float:
    raise WireError("number", f"{name} is not a number")


def loads_bounded(data: bytes | str, *, max_bytes: int, max_containers: int) -> Any:
    """JSON with bounded size, containers (and so nesting) and number length; NaN, Infinity
    and numbers that overflow a float are refused."""
    if len(data) > max_bytes:
        raise WireError("too-large", f"{len(data)} bytes (at most {max_bytes})")
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    shape = _shape(raw)
    if shape.count(b"[") > max_containers and _containers(_STRING.sub(b'""', raw)) > max_containers:
        raise WireError("too-deep", f"more than {max_containers} arrays and objects")
    if _NUMBER_RUN not in shape:
        # orjson reads the same JSON to the same values, and refuses the same inputs (NaN,
        # Infinity, overflowing floats, invalid UTF-8, lone surrogates …); a number of more
        # characters than an int64 holds is left to the strict parser (orjson would read a
        # long int as a float), and so is whatever orjson refuses: that parser says why
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return loads_strict(raw)


def loads_strict(raw: bytes) -> Any:
    """JSON by the standard library's parser with every number checked: what `loads_bounded`
    falls back to, and what it is held equal to (tests/gateway/test_wire.py)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("not-utf8", "the payload is not UTF-8") from None
    try:
        return json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_reject_constant
        )
    except RecursionError:
        raise WireError("too-deep", "nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise WireError("not-json", f"invalid JSON: {exc.msg} at {exc.pos}") from None


# --- field checks ------------------------------------------------------------------------------


def _text(value: object, name: str, limit: int) -> str:
    if not isinstance(value, str):
        raise WireError("string", f"{name} is not a string")
    if len(value) > limit:
        raise WireError("string", f"{name} has {len(value)} characters (at most {limit})")
    if _CONTROL.search(value):
        raise WireError("string", f"{name} contains control characters")
    return value


def _slug(value: object, name: str) -> str:
    if not isinstance(value, str) or not _SLUG.fullmatch(value):
        raise WireError("id", f"{name} is not a valid id")
    return value


def _number(value: object, name: str, bound: float) -> float:
    # bool is a subclass of int, and JSON `true` must never become 1.0 °C
    if type(value) is not float and type(value) is not int:
        raise WireError("number", f"{name} is not a number")
    if not -bound <= value <= bound:
        raise WireError("number", f"{name} is outside ±{bound:g}")
    return float(value)


def _integer(value: object, name: str, bound: int) -> int:
    if type(value) is not int or not 0 <= value <= bound:
        raise WireError("number", f"{name} is not an integer within 0…{bound}")
    return value


def parse_ts(value: object, name: str = "ts") -> datetime:
    """An RFC 3339 timestamp with a zone, within the plausible years, as UTC."""
    if not isinstance(value, str) or len(value) > 40:
        raise WireError("timestamp", f"{name} is not an RFC 3339 timestamp")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise WireError("timestamp", f"{name} {value!r} is not an RFC 3339 timestamp")
    year = int(match.group(1))
    if not LIMITS.earliest_year <= year <= LIMITS.latest_year:
        raise WireError(
            "timestamp",
            f"{name} year {year} is outside {LIMITS.earliest_year}…{LIMITS.latest_year}",
        )
    try:
        # Python 3.11 reads RFC 3339 itself (Z, any number of fraction digits); the regex above
        # made sure that is all it gets, and the year range that UTC cannot overflow.
        parsed = datetime.fromisoformat(value.upper())
    except ValueError:
        raise WireError("timestamp", f"{name} {value!r} is not a valid time") from None
    return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)


_READING_KEYS = frozenset(
    ("site", "gateway", "sensor", "kind", "value", "unit", "ts", "seq", "quality", "fault")
)


#: Texts and timestamps already found valid, by field: a batch repeats its site, gateway, kinds
#: and units, and a polling gateway its timestamps, so each is checked once, not per reading.
#: Bounded: cleared when full.
_CHECKED: dict[str, dict[str, Any]] = {
    "site": {},
    "gateway": {},
    "sensor": {},
    "kind": {},
    "unit": {},
    "ts": {},
}
_CHECKED_MAX = 4096


def _checked(item: dict[str, object], name: str, check: Callable[[object], object]) -> Any:
    return _known(name, item.get(name), check)


def _known(name: str, raw: object, check: Callable[[object], object]) -> Any:
    """`raw` as `check` finds it valid for the field `name`, checked once per distinct text."""
    if type(raw) is not str:  # not hashable perhaps, and never valid: the check says why
        return check(raw)
    known = _CHECKED[name]
    value = known.get(raw)
    if value is None:
        value = check(raw)
        if len(known) >= _CHECKED_MAX:
            known.clear()
        known[raw] = value
    return value


_CHECKS: dict[str, Callable[[object], object]] = {
    "site": lambda v: _slug(v, "site"),
    "gateway": lambda v: _slug(v, "gateway"),
    "sensor": lambda v: _slug(v, "sensor"),
    "kind": lambda v: _text(v, "kind", LIMITS.kind),
    "unit": lambda v: _text(v, "unit", LIMITS.unit),
    "ts": parse_ts,
}


def _reading(item: object) -> Reading:
    if not isinstance(item, dict):
        raise WireError("shape", "a reading is not a JSON object")
    if not _READING_KEYS.issuperset(item):
        extra = item.keys() - _READING_KEYS
        raise WireError("shape", f"unknown field {sorted(extra)[0][:40]!r}")
    get = item.get
    quality = get("quality", "good")
    fault_value = get("fault")
    fault = None
    if quality != "good" or fault_value is not None:
        quality, fault = _quality(quality, fault_value)
    # `_checked` inline for the six texts a batch repeats (a call each was a tenth of decoding)
    site = _KNOWN_SITE.get(raw) if type(raw := get("site")) is str else None
    gateway = _KNOWN_GATEWAY.get(raw) if type(raw := get("gateway")) is str else None
    sensor = _KNOWN_SENSOR.get(raw) if type(raw := get("sensor")) is str else None
    kind = _KNOWN_KIND.get(raw) if type(raw := get("kind")) is str else None
    unit = _KNOWN_UNIT.get(raw) if type(raw := get("unit")) is str else None
    ts = _KNOWN_TS.get(raw) if type(raw := get("ts")) is str else None
    return Reading.trusted(
        site if site is not None else _checked(item, "site", _CHECKS["site"]),
        gateway if gateway is not None else _checked(item, "gateway", _CHECKS["gateway"]),
        sensor if sensor is not None else _checked(item, "sensor", _CHECKS["sensor"]),
        kind if kind is not None else _checked(item, "kind", _CHECKS["kind"]),
        _number(get("value"), "value", LIMITS.value),
        unit if unit is not None else _checked(item, "unit", _CHECKS["unit"]),
        ts if ts is not None else _checked(item, "ts", _CHECKS["ts"]),
        _integer(get("seq"), "seq", LIMITS.seq),
        quality,
        fault,
    )


_KNOWN_SITE, _KNOWN_GATEWAY, _KNOWN_SENSOR = (
    _CHECKED["site"],
    _CHECKED["gateway"],
    _CHECKED["sensor"],
)
_KNOWN_KIND, _KNOWN_UNIT, _KNOWN_TS = _CHECKED["kind"], _CHECKED["unit"], _CHECKED["ts"]


def _quality(quality: object, fault_value: object) -> tuple[Literal["good", "fault"], str | None]:
    if quality not in ("good", "fault"):
        raise WireError("shape", "quality is neither 'good' nor 'fault'")
    fault = None if fault_value is None else _text(fault_value, "fault", LIMITS.fault)
    if quality == "fault" and not fault:
        raise WireError("shape", "a fault reading must name its fault")
    if quality == "good" and fault is not None:
        raise WireError("shape", "'fault' is only allowed with quality 'fault'")
    return ("good" if quality == "good" else "fault"), fault


# --- readings batches --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rejected:
    """One reading of a batch that was refused: its index, the reason slug and the detail."""

    index: int
    reason: str
    detail: str
    raw: str = ""


@dataclass(frozen=True, slots=True)
class Batch:
    """A decoded readings message. `outbox` identifies the gateway's outbox that numbered the
    readings (None from gateways that predate it); a new id means numbering starts again."""

    readings: tuple[Reading, ...]
    outbox: str | None = None
    rejected: tuple[Rejected, ...] = field(default=())
    #: the message it was decoded from (`decode_batch`): decoded again with the same site and
    #: gateway, it gives these readings (the stream's input journal keeps it so)
    payload: bytes = field(default=b"", compare=False, repr=False)


def encode_reading(reading: Reading) -> str:
    """One reading's JSON object (what the outbox stores; no `fault` key on good readings).

    Written out field by field — the same text `json.dumps` gives the object with compact
    separators (tests/gateway/test_wire.py holds it so) — because every reading the gateway
    reads passes here once: its texts repeat (site, sensor, unit), so each is escaped once."""
    fields = reading.__dict__
    return encode_fields(fields, fields["seq"], fields["ts"].timestamp())


def encode_fields(fields: Mapping[str, Any], seq: int, epoch: float) -> str:
    """`encode_reading` of a reading's fields (its `__dict__`: a pydantic model's attribute
    costs several times a dict's item), numbered `seq`, measured at `epoch` (its `ts` in
    seconds since 1970, which the outbox keeps beside the text)."""
    value = fields["value"]
    if type(value) is not float or not math.isfinite(value):
        value = _finite(value)
    key = (fields["site"], fields["gateway"], fields["sensor"], fields["kind"])
    head = _HEADS.get(key)
    if head is None:
        if len(_HEADS) >= _HEADS_KEPT:
            _HEADS.clear()
        head = _HEADS[key] = (
            f'{{"site":{_json_text(key[0])},"gateway":{_json_text(key[1])},'
            f'"sensor":{_json_text(key[2])},"kind":{_json_text(key[3])},"value":'
        )
    body = (
        f'{head}{float.__repr__(value)},"unit":{_json_text(fields["unit"])},'
        f'"ts":"{_ts_text(fields["ts"], epoch)}","seq":{int(seq)},'
        f'"quality":{_json_text(fields["quality"])}'
    )
    fault = fields["fault"]
    if fault is not None:
        return f'{body},"fault":{_json_text(fault)}}}'
    return body + "}"


#: a reading's text up to its value, per (site, gateway, sensor, kind): a gateway's few sensors
_HEADS: dict[tuple[str, str, str, str], str] = {}
_HEADS_KEPT = 4096
#: a time's milliseconds as written (".000Z" … ".999Z")
_MILLIS = [f".{ms:03d}Z" for ms in range(1000)]
#: the last second written and its text up to the seconds (readings come in order), one tuple
#: swapped whole: the outboxes' worker threads share it
_second: list[tuple[int, str]] = [(-1, "")]


def _ts_text(ts: datetime, epoch: float) -> str:
    """`format_ts(ts)`, a fifth of its cost: a gateway writes thousands of readings a second,
    and each second's date and time are formatted once. `epoch` is `ts.timestamp()`; below
    2**32 its whole seconds are exactly the time's (a float's spacing there is under a
    microsecond), elsewhere `format_ts` says."""
    if ts.tzinfo is not UTC or not 0.0 <= epoch < 4294967296.0:
        return format_ts(ts)
    second = int(epoch)
    last, text = _second[0]
    if last != second:
        text = ts.replace(microsecond=0, tzinfo=None).isoformat()
        _second[0] = (second, text)
    micro = ts.microsecond
    return text + _MILLIS[micro // 1000] if micro else text + "Z"


@functools.lru_cache(maxsize=4096)
def _json_text(text: str) -> str:
    """A JSON string (the few texts of a gateway's readings, escaped once each)."""
    return json.dumps(text, ensure_ascii=False)


def _finite(value: object) -> float:
    number = float(value)  # type: ignore[arg-type]  # an int or a float subclass
    if not math.isfinite(number):
        raise ValueError(f"a reading's value must be finite, not {number!r}")
    return number


def encode_bodies(bodies: Iterable[str], *, outbox: str | None) -> bytes:
    """A readings message from readings already encoded (the outbox's bodies)."""
    head = "{" if outbox is None else '{"outbox":' + json.dumps(outbox) + ","
    return (head + '"readings":[' + ",".join(bodies) + "]}").encode()


def encode_batch(readings: Iterable[Reading], *, outbox: str | None = None) -> bytes:
    return encode_bodies((encode_reading(r) for r in readings), outbox=outbox)


def _batch_body(body: object) -> tuple[list[object], str | None]:
    if isinstance(body, list):
        return body, None
    if isinstance(body, dict) and "readings" in body:
        if body.keys() - {"readings", "outbox"}:
            raise WireError("shape", "a readings message has only 'outbox' and 'readings'")
        items = body["readings"]
        if not isinstance(items, list):
            raise WireError("shape", "'readings' is not an array")
        outbox = body.get("outbox")
        if outbox is not None:
            outbox = _text(outbox, "outbox", LIMITS.outbox)
        return items, outbox
    raise WireError("shape", "not an array of readings nor {outbox, readings}")


def _decode_items(
    items: Sequence[object], *, site: str | None, gateway: str | None
) -> tuple[list[Reading], list[Rejected]]:
    if len(items) > LIMITS.readings:
        raise WireError("too-many", f"{len(items)} readings (at most {LIMITS.readings})")
    readings: list[Reading] = []
    rejected: list[Rejected] = []
    for i, item in enumerate(items):
        try:
            reading = _reading(item)
            if site is not None and (reading.site, reading.gateway) != (site, gateway):
                raise WireError(  # noqa: TRY301 - one path for every refused reading
                    "wrong-gateway",
                    f"a reading of {reading.site}/{reading.gateway} on {site}/{gateway}'s topic",
                )
        except WireError as exc:
            rejected.append(Rejected(i, exc.reason, str(exc), _preview(item)))
            continue
        readings.append(reading)
    return readings, rejected


def _preview(item: object) -> str:
    try:
        return json.dumps(item, ensure_ascii=True)[:200]
    except (TypeError, ValueError):  # pragma: no cover - decoded JSON always re-encodes
        return repr(item)[:200]


class _TypedReading(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A reading as msgspec reads it straight from the bytes: its types checked, not yet its
    values."""

    site: str
    gateway: str
    sensor: str
    kind: str
    value: float  # a JSON integer too, as `_number` takes it; never a boolean
    unit: str
    ts: str
    seq: int
    quality: str = "good"
    fault: str | None = None


class _TypedBatch(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    readings: list[_TypedReading]
    outbox: str | None = None


_TYPED = msgspec.json.Decoder(_TypedBatch | list[_TypedReading])


def _typed_body(payload: bytes) -> tuple[list[_TypedReading], str | None] | None:
    """A batch's readings and outbox as msgspec reads them, or None when it cannot (or the
    message has a long number, which only the reference path reads)."""
    if len(payload) > LIMITS.payload or _NUMBER_RUN in _shape(payload):
        return None
    try:
        body = _TYPED.decode(payload)
    except Exception:  # noqa: BLE001 - whatever msgspec refuses, the reference path explains
        return None
    if type(body) is not _TypedBatch:
        return (body, None) if len(body) <= LIMITS.readings else None
    if len(body.readings) > LIMITS.readings:
        return None
    outbox = body.outbox
    if outbox is not None:
        try:
            outbox = _text(outbox, "outbox", LIMITS.outbox)
        except WireError:
            return None
    return body.readings, outbox


def _decode_typed(  # noqa: PLR0912 - one loop, inline: a call per reading costs
    payload: bytes, site: str | None, gateway: str | None
) -> Batch | None:
    """The batch `decode_batch` gives, when every reading of it is valid, without the generic
    decode: msgspec reads the bytes straight into typed fields (no dictionary per reading, no
    lookup per field), and what types do not say — ids, texts, ranges, the quality — is
    checked here as `_reading` checks it. None when anything is amiss, so that the reference
    path decides which readings to refuse and why (tests/gateway/test_wire.py holds the two
    equal). Container counts need no check here: the types allow no nesting."""
    typed = _typed_body(payload)
    if typed is None:
        return None
    items, outbox = typed
    value_bound, seq_bound = LIMITS.value, LIMITS.seq
    known_sensor = _KNOWN_SENSOR
    readings: list[Reading] = []
    append = readings.append
    # a batch repeats its kinds, units and times reading after reading: comparing a text with
    # the last reading's is cheaper than looking up a fresh string (hashing it)
    kind_raw: str | None = None
    unit_raw: str | None = None
    ts_raw: str | None = None
    kind = unit = ""
    ts = _NO_TIME
    try:
        if site is not None:
            site = _known("site", site, _CHECKS["site"])
            gateway = _known("gateway", gateway, _CHECKS["gateway"])
        for r in items:
            if site is None:
                r_site = _known("site", r.site, _CHECKS["site"])
                r_gateway = _known("gateway", r.gateway, _CHECKS["gateway"])
            elif r.site == site and r.gateway == gateway:
                r_site, r_gateway = site, gateway
            else:
                return None  # another gateway's reading: refused with its reason there
            sensor = known_sensor.get(r.sensor)
            if sensor is None:
                sensor = _known("sensor", r.sensor, _CHECKS["sensor"])
            if r.kind != kind_raw:
                kind_raw = r.kind
                kind = _known("kind", kind_raw, _CHECKS["kind"])
            if r.unit != unit_raw:
                unit_raw = r.unit
                unit = _known("unit", unit_raw, _CHECKS["unit"])
            if r.ts != ts_raw:
                ts_raw = r.ts
                ts = _known("ts", ts_raw, _CHECKS["ts"])
            value, seq = r.value, r.seq
            if not -value_bound <= value <= value_bound or not 0 <= seq <= seq_bound:
                return None
            quality: Literal["good", "fault"] = "good"
            fault = r.fault
            if r.quality != "good" or fault is not None:
                quality, fault = _quality(r.quality, fault)
            append(
                Reading.trusted(
                    r_site, r_gateway, sensor, kind, value, unit, ts, seq, quality, fault
                )
            )
    except WireError:
        return None
    return Batch(tuple(readings), outbox, (), payload)


_NO_TIME = datetime.min.replace(tzinfo=UTC)


def decode_batch(payload: bytes, *, site: str | None = None, gateway: str | None = None) -> Batch:
    """A readings message. When `site`/`gateway` are given (from the topic or the Kafka key)
    every reading must be theirs. Raises WireError if the message as a whole is unusable."""
    typed = _decode_typed(payload, site, gateway)
    return typed if typed is not None else _decode_reference(payload, site, gateway)


def _decode_reference(payload: bytes, site: str | None, gateway: str | None) -> Batch:
    """A readings message decoded generically, reading by reading: what `decode_batch` gives
    when the typed path leaves it (a refused reading, an older gateway's order, noise)."""
    body = loads_bounded(payload, max_bytes=LIMITS.payload, max_containers=LIMITS.readings + 2)
    items, outbox = _batch_body(body)
    readings, rejected = _decode_items(items, site=site, gateway=gateway)
    return Batch(tuple(readings), outbox, tuple(rejected), payload)


# --- status ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Status:
    """A gateway's status: online (with its outbox figures) or offline (its last will)."""

    online: bool
    ts: datetime
    buffered: int | None = None
    thinned: int | None = None
    dropped: int | None = None
    #: seconds the oldest reading still in the outbox has waited since it was measured
    lag: float | None = None
    #: the gateway's disk is full: its outbox thins harder until there is room again
    no_room: bool = False


def _status_dict(status: Status) -> dict[str, object]:
    body: dict[str, object] = {
        "state": "online" if status.online else "offline",
        "ts": format_ts(status.ts),
        "buffered": status.buffered,
        "thinned": status.thinned,
        "dropped": status.dropped,
        "lag": status.lag,
    }
    if status.no_room:  # only then: a server of an older version takes the status as before
        body["no_room"] = True
    return body


def encode_status(status: Status) -> bytes:
    return json.dumps(_status_dict(status), separators=(",", ":")).encode()


def encode_kafka_status(status: Status) -> bytes:
    return json.dumps({"status": _status_dict(status)}, separators=(",", ":")).encode()


def _count(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    return None if value is None else _integer(value, name, 2**63 - 1)


def _seconds(value: object) -> float:
    seconds = _number(value, "lag", LIMITS.value)
    if seconds < 0:
        raise WireError("number", "lag is negative")
    return seconds


def _status(body: object) -> Status:
    if not isinstance(body, dict):
        raise WireError("shape", "a status is not a JSON object")
    if body.keys() - {"state", "ts", "buffered", "thinned", "dropped", "lag", "no_room"}:
        raise WireError(
            "shape", "a status has only state, ts, buffered, thinned, dropped, lag and no_room"
        )
    no_room = body.get("no_room", False)
    if not isinstance(no_room, bool):
        raise WireError("shape", "no_room is not true or false")
    lag = body.get("lag")
    state = body.get("state")
    if state not in ("online", "offline"):
        raise WireError("shape", "state is neither 'online' nor 'offline'")
    return Status(
        online=state == "online",
        ts=parse_ts(body.get("ts")),
        buffered=_count(body, "buffered"),
        thinned=_count(body, "thinned"),
        dropped=_count(body, "dropped"),
        lag=None if lag is None else _seconds(lag),
        no_room=no_room,
    )


def decode_status(payload: bytes) -> Status:
    return _status(loads_bounded(payload, max_bytes=LIMITS.status, max_containers=1))


# --- Kafka readings topic ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tick:
    at: datetime


def encode_tick(at: datetime) -> bytes:
    return json.dumps({"tick": format_ts(at)}).encode()


def decode_kafka(
    value: bytes, *, site: str | None = None, gateway: str | None = None
) -> Batch | Status | Tick:
    """A readings-topic message: a readings batch, a wrapped status, or a clock tick."""
    typed = _decode_typed(value, site, gateway)
    if typed is not None:
        return typed
    body = loads_bounded(value, max_bytes=LIMITS.payload, max_containers=LIMITS.readings + 2)
    if isinstance(body, dict) and body.keys() == {"status"}:
        return _status(body["status"])
    if isinstance(body, dict) and body.keys() == {"tick"}:
        return Tick(parse_ts(body["tick"], "tick"))
    items, outbox = _batch_body(body)
    readings, rejected = _decode_items(items, site=site, gateway=gateway)
    return Batch(tuple(readings), outbox, tuple(rejected), value)


def parse_kafka_key(key: bytes) -> tuple[str, str]:
    """(site, gateway) of a readings-topic key."""
    try:
        site, gateway = key.decode("ascii").split("/")
    except (UnicodeDecodeError, ValueError):
        raise WireError("key", f"not a site/gateway key: {key[:80]!r}") from None
    return _slug(site, "site"), _slug(gateway, "gateway")


# --- traces ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceLine:
    received: datetime
    reading: Reading


def encode_trace_line(received: datetime, reading: Reading) -> str:
    return '{"received":"' + format_ts(received) + '","reading":' + encode_reading(reading) + "}"


def decode_trace_line(line: str | bytes) -> TraceLine:
    body = loads_bounded(line, max_bytes=LIMITS.trace_line, max_containers=2)
    if not isinstance(body, dict) or body.keys() != {"received", "reading"}:
        raise WireError("shape", "a trace line is {received, reading}")
    return TraceLine(parse_ts(body["received"], "received"), _reading(body["reading"]))
