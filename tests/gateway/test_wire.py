"""The v1 wire module: every encode/decode pair round-trips, and no input makes a decoder do
anything but return or raise WireError — within its bounds."""

from __future__ import annotations

import contextlib
import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import wire
from gateway.models import Reading, format_ts
from gateway.wire import (
    LIMITS,
    Batch,
    Status,
    Tick,
    WireError,
    decode_batch,
    decode_kafka,
    decode_status,
    decode_trace_line,
    encode_batch,
    encode_bodies,
    encode_fields,
    encode_kafka_status,
    encode_reading,
    encode_status,
    encode_tick,
    encode_trace_line,
    loads_bounded,
    loads_strict,
    parse_kafka_key,
    parse_ts,
    topic_ids,
)

T0 = datetime(2026, 1, 15, 2, 0, tzinfo=UTC)

slugs = st.from_regex(r"[a-z0-9](?:[a-z0-9_-]{0,10}[a-z0-9])?", fullmatch=True)
texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), max_codepoint=0x2FFF), max_size=16
)
times = st.datetimes(
    min_value=datetime(2000, 1, 2),  # noqa: DTZ001 - hypothesis takes naive bounds
    max_value=datetime(2199, 12, 30),  # noqa: DTZ001
    timezones=st.just(UTC),
).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))


@st.composite
def readings(draw):
    fault = draw(st.one_of(st.none(), texts.filter(bool)))
    return Reading(
        site=draw(slugs),
        gateway=draw(slugs),
        sensor=draw(slugs),
        kind=draw(texts),
        value=draw(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)),
        unit=draw(texts),
        ts=draw(times),
        seq=draw(st.integers(min_value=0, max_value=2**63 - 1)),
        quality="fault" if fault else "good",
        fault=fault,
    )


@given(st.lists(readings(), max_size=20), st.one_of(st.none(), slugs))
def test_a_batch_round_trips(batch, outbox):
    decoded = decode_batch(encode_batch(batch, outbox=outbox))
    assert decoded == Batch(tuple(batch), outbox, ())


@given(readings())
def test_a_reading_is_encoded_as_json_dumps_encodes_its_fields(reading):
    body = {
        "site": reading.site,
        "gateway": reading.gateway,
        "sensor": reading.sensor,
        "kind": reading.kind,
        "value": reading.value,
        "unit": reading.unit,
        "ts": format_ts(reading.ts),
        "seq": reading.seq,
        "quality": reading.quality,
    }
    if reading.fault is not None:
        body["fault"] = reading.fault
    assert encode_reading(reading) == json.dumps(body, ensure_ascii=False, separators=(",", ":"))


@given(
    st.datetimes(
        min_value=datetime(1000, 1, 1),  # noqa: DTZ001 - hypothesis takes naive bounds
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)), UTC]),
    )
)
def test_a_time_is_written_in_utc_with_milliseconds_cut_only_when_there_are_any(when):
    utc = when.astimezone(UTC)
    expected = (
        utc.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        if utc.microsecond
        else utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    assert format_ts(when) == expected
    if 2000 <= utc.year < 2200:  # the years the wire takes
        cut = utc.replace(microsecond=utc.microsecond // 1000 * 1000)
        assert parse_ts(format_ts(when)) == cut


def test_a_value_that_is_not_a_finite_float_is_written_as_one_or_refused():
    reading = Reading.trusted("s", "g", "t", "temperature", 21, "°C", T0, 1)
    assert '"value":21.0,' in encode_reading(reading)
    with pytest.raises(ValueError, match="finite"):
        encode_reading(Reading.trusted("s", "g", "t", "temperature", math.inf, "°C", T0, 1))


@given(readings(), st.integers(min_value=0, max_value=2**63 - 1))
def test_the_outbox_writes_a_reading_as_its_copy_with_the_number_given_is_encoded(reading, seq):
    epoch = reading.ts.timestamp()
    written = encode_fields(reading.__dict__, seq, epoch)
    assert written == encode_reading(reading.model_copy(update={"seq": seq}))
    assert decode_batch(encode_bodies([written], outbox=None)).readings[0].seq == seq


@given(
    st.one_of(
        st.datetimes(min_value=datetime(1, 1, 1), timezones=st.just(UTC)),  # noqa: DTZ001
        st.integers(min_value=-5, max_value=5).map(  # either side of the cached seconds' end
            lambda d: datetime.fromtimestamp(2**32, UTC) + timedelta(microseconds=d)
        ),
        st.integers(min_value=-(10**7), max_value=10**7).map(  # readings within seconds
            lambda d: T0 + timedelta(microseconds=d)
        ),
    )
)
def test_the_outbox_writes_each_time_as_format_ts_does(when):
    assert wire._ts_text(when, when.timestamp()) == format_ts(when)
    assert wire._ts_text(when, when.timestamp()) == format_ts(when)  # the second from the cache


@given(readings())
def test_a_decoded_reading_is_the_validated_model_in_every_way(reading):
    # the decoder builds readings without pydantic's per-field loop (`Reading.trusted`): what
    # it builds must behave as the model does — equal, the same fields set, dumps, copies
    (decoded,) = decode_batch(encode_batch([reading])).readings
    assert type(decoded) is Reading
    assert decoded == reading
    assert decoded.model_fields_set == Reading.model_validate(reading.model_dump()).model_fields_set
    assert decoded.model_dump() == reading.model_dump()
    assert decoded.model_dump_json() == reading.model_dump_json()
    assert decoded.model_copy(update={"value": 1.5}).value == 1.5
    with pytest.raises(ValueError, match="frozen"):
        decoded.value = 2.0  # type: ignore[misc]
    # the readings it builds share one fields set: nothing done to one reaches another
    other = Reading.trusted("s", "g", "t", "temperature", 2.5, "°C", T0, 0)
    decoded.model_copy(update={"value": 1.5, "fault": None}).model_fields_set.add("x")
    decoded.model_copy(update={"seq": 3}).model_copy(deep=True).model_fields_set.discard("seq")
    assert other.model_fields_set == decoded.model_fields_set == set(Reading.model_fields)


def test_a_flood_of_distinct_ids_keeps_the_checked_values_bounded_and_decoding_right():
    from gateway import wire

    reading = Reading(
        site="s", gateway="g", sensor="t", kind="temperature", value=3.0, unit="°C", ts=T0, seq=1
    )
    item = json.loads(encode_batch([reading]))["readings"][0]
    flood = [item | {"sensor": f"ghost-{i}", "seq": i + 1} for i in range(3 * wire._CHECKED_MAX)]
    for start in range(0, len(flood), 1000):
        batch = decode_batch(json.dumps(flood[start : start + 1000]).encode())
        assert len(batch.readings) == len(flood[start : start + 1000])
    assert all(len(known) <= wire._CHECKED_MAX for known in wire._CHECKED.values())
    # after the flood a genuine reading decodes to exactly what was sent
    assert decode_batch(encode_batch([reading])).readings == (reading,)


def test_a_value_checked_once_is_not_trusted_in_another_field_or_shape():
    # what one batch proved valid (a site, a unit, a time) is remembered by field; a bad value
    # after a good one is still refused, and a non-text value never reaches the memory
    reading = Reading(
        site="s", gateway="g", sensor="t", kind="temperature", value=3.0, unit="°C", ts=T0, seq=1
    )
    good = json.loads(encode_batch([reading]).decode())
    decode_batch(json.dumps(good).encode())
    for field, bad in (
        ("site", good["readings"][0]["unit"]),
        ("sensor", ["t1"]),
        ("ts", {"at": good["readings"][0]["ts"]}),
        ("unit", "°C\x00"),
        ("kind", "k" * 10_000),
    ):
        body = json.loads(json.dumps(good))
        body["readings"][0][field] = bad
        batch = decode_batch(json.dumps(body).encode())
        assert not batch.readings and len(batch.rejected) == 1, (field, batch)


@given(
    st.booleans(),
    times,
    st.one_of(st.none(), st.integers(0, 2**40)),
    st.one_of(st.none(), st.floats(0, 1e9)),
)
def test_a_status_round_trips_in_one_shape_on_mqtt_and_kafka(online, ts, buffered, lag):
    status = Status(online, ts, buffered, 0, 0, lag)
    assert decode_status(encode_status(status)) == status
    assert decode_kafka(encode_kafka_status(status)) == status


@given(times)
def test_a_tick_round_trips(at):
    assert decode_kafka(encode_tick(at)) == Tick(at)


@given(times, readings())
def test_a_trace_line_round_trips(received, reading):
    line = decode_trace_line(encode_trace_line(received, reading))
    assert (line.received, line.reading) == (received, reading)


def test_a_bare_array_from_an_older_gateway_is_still_a_batch():
    reading = Reading(
        site="s", gateway="g", sensor="t", kind="temperature", value=3.0, unit="°C", ts=T0, seq=1
    )
    payload = json.dumps([json.loads(encode_batch([reading]))["readings"][0]]).encode()
    assert decode_batch(payload, site="s", gateway="g") == Batch((reading,), None, ())


GOOD = {
    "site": "s",
    "gateway": "g",
    "sensor": "t",
    "kind": "temperature",
    "value": 3.0,
    "unit": "°C",
    "ts": "2026-01-15T02:00:00Z",
    "seq": 1,
}


BAD_READINGS = [
    ({"value": True}, "number"),
    ({"value": False}, "number"),
    ({"value": "3.5"}, "number"),
    ({"seq": "7"}, "number"),
    ({"seq": 1.5}, "number"),
    ({"seq": -1}, "number"),
    ({"value": 1e13}, "number"),
    ({"ts": "0001-01-01T00:30:00+01:00"}, "timestamp"),
    ({"ts": "9999-12-31T23:59:59-01:00"}, "timestamp"),
    ({"ts": "2026-01-15T02:00:00"}, "timestamp"),
    ({"ts": "2026-02-30T02:00:00Z"}, "timestamp"),
    ({"ts": 1768442400}, "timestamp"),
    ({"ts": ""}, "timestamp"),
    ({"kind": "k" * 33}, "string"),
    ({"kind": "temp\ud800"}, "string"),
    ({"unit": "\udfff"}, "string"),
    ({"unit": "°C\x00"}, "string"),
    ({"quality": "fault", "fault": "crc\x00"}, "string"),
    ({"quality": "fault", "fault": "x" * 65}, "string"),
    ({"quality": "fault"}, "shape"),
    ({"fault": "crc"}, "shape"),
    ({"quality": "bad"}, "shape"),
    ({"extra": 1}, "shape"),
    ({"sensor": "Not A Slug"}, "id"),
    ({"gateway": "other"}, "wrong-gateway"),
]


@pytest.mark.parametrize(("change", "reason"), BAD_READINGS)
def test_a_bad_reading_is_refused_with_its_reason_and_the_good_ones_go_on(change, reason):
    bad = {**GOOD, **change}
    payload = json.dumps({"readings": [GOOD, bad, {**GOOD, "seq": 2}]}).encode()
    batch = decode_batch(payload, site="s", gateway="g")
    assert [r.seq for r in batch.readings] == [1, 2]
    assert [(r.index, r.reason) for r in batch.rejected] == [(1, reason)]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "too-deep"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "too-deep"),
        (b"[" + b"1" * 5000 + b"]", "number"),
        (b"[1e309]", "number"),
        (b"[NaN]", "number"),
        (b"[-Infinity]", "number"),
        (b"\xff\xfe", "not-utf8"),
        (b"", "not-json"),
        (b"{not json", "not-json"),
        (b" " * (LIMITS.payload + 1), "too-large"),
        (json.dumps([1] * (LIMITS.readings + 1)).encode(), "too-many"),
        (b'{"readings": {}}', "shape"),
        (b'{"readings": [], "more": 1}', "shape"),
        (b'{"outbox": "x\\u0000", "readings": []}', "string"),
        (b"42", "shape"),
    ],
)
def test_a_malformed_batch_is_one_wire_error(payload, reason):
    with pytest.raises(WireError) as exc:
        decode_batch(payload, site="s", gateway="g")
    assert exc.value.reason == reason


@pytest.mark.parametrize(
    "payload",
    [
        b'{"state": "online"}',
        b'{"state": "on fire", "ts": "2026-01-15T02:00:00Z"}',
        b'{"state": "online", "ts": "2026-01-15T02:00:00Z", "buffered": true}',
        b'{"state": "online", "ts": "2026-01-15T02:00:00Z", "buffered": -1}',
        b'{"state": "online", "ts": "2026-01-15T02:00:00Z", "lag": -5}',
        b'{"state": "online", "ts": "2026-01-15T02:00:00Z", "lag": "5"}',
        b'{"state": "online", "ts": "0001-01-01T00:00:00+01:00"}',
        b'{"state": "online", "ts": "2026-01-15T02:00:00Z", "x": 1}',
        b'{"state": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        b"[]",
        b"x" * 5000,
    ],
)
def test_a_malformed_status_is_one_wire_error(payload):
    with pytest.raises(WireError):
        decode_status(payload)


@pytest.mark.parametrize(
    "topic",
    [
        "husvakt/v1/s/g",
        "husvakt/v2/s/g/readings",
        "husvakt/v1/S/g/readings",
        "husvakt/v1/s/g/readings/extra",
        "husvakt/v1/" + "x" * 300 + "/g/readings",
        "other/v1/s/g/readings",
    ],
)
def test_topics_and_keys_that_name_no_valid_gateway_are_refused(topic):
    with pytest.raises(WireError):
        topic_ids(topic)
    assert topic_ids("husvakt/v1/s/g-1/status") == ("s", "g-1")
    with pytest.raises(WireError):
        parse_kafka_key(b"\xff/g")
    assert parse_kafka_key(b"s/g") == ("s", "g")


def test_timestamps_are_rfc3339_with_a_zone_within_the_plausible_years():
    assert parse_ts("2026-01-15T03:00:00.123456789+01:00") == T0 + timedelta(microseconds=123456)
    assert parse_ts("2026-01-15t02:00:00z") == T0


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_no_bytes_make_a_decoder_raise_anything_but_wire_error(payload):
    for decode in (decode_batch, decode_status, decode_kafka, decode_trace_line):
        with contextlib.suppress(WireError):
            decode(payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(
    st.lists(
        st.dictionaries(st.sampled_from([*sorted(GOOD), "quality", "fault", "x"]), json_values),
        max_size=5,
    )
)
def test_no_json_makes_the_batch_decoder_raise_anything_but_wire_error(items):
    payload = json.dumps({"readings": items}, allow_nan=True).encode()
    try:
        batch = decode_batch(payload, site="s", gateway="g")
    except WireError:
        return
    assert len(batch.readings) + len(batch.rejected) == len(items)
    for reading in batch.readings:
        assert type(reading.value) is float and type(reading.seq) is int


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


def _slipped(case):
    """A JSON value's text with a few bytes slipped in somewhere."""
    value, at, extra = case
    raw = json.dumps(value).encode()
    return raw[:at] + extra + raw[at:]


def _outcome(read, raw):
    try:
        value = read(raw)
    except WireError as exc:
        return ("refused", exc.reason)
    return ("read", json.dumps(value, sort_keys=True), repr(value))


@settings(max_examples=600, deadline=None)
@given(
    json_values.map(lambda v: json.dumps(v, allow_nan=True).encode())
    | st.binary(max_size=80)
    | st.tuples(json_values, st.integers(0, 40), st.binary(min_size=1, max_size=3)).map(_slipped)
)
def test_the_fast_json_reader_reads_and_refuses_exactly_what_the_strict_one_does(raw):
    """`loads_bounded` reads with orjson and falls back to the standard library's parser with
    every number checked: for any bytes — JSON, JSON with bytes slipped in, noise, infinities,
    long numbers, lone surrogates — the same values (types included) or the same refusal."""
    fast = _outcome(lambda r: loads_bounded(r, max_bytes=10_000, max_containers=10_000), raw)
    assert fast == _outcome(loads_strict, raw)


def _containers_in(value):
    if isinstance(value, list):
        return 1 + sum(_containers_in(v) for v in value)
    if isinstance(value, dict):
        return 1 + sum(_containers_in(v) for v in value.values())
    return 0


bracket_texts = st.text(alphabet='[]{}"\\a', max_size=12)
bracketed_values = st.recursive(
    st.none() | st.integers(-1000, 1000) | bracket_texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(bracket_texts, inner, max_size=4),
    max_leaves=16,
)


@settings(max_examples=400, deadline=None)
@given(bracketed_values, st.integers(0, 8))
def test_the_container_bound_counts_arrays_and_objects_not_brackets_in_strings(value, bound):
    """`loads_bounded` refuses as too deep exactly the JSON with more arrays and objects than
    its bound, however many brackets and quotes its strings and keys hold."""
    raw = json.dumps(value).encode()
    outcome = _outcome(lambda r: loads_bounded(r, max_bytes=100_000, max_containers=bound), raw)
    if _containers_in(value) > bound:
        assert outcome == ("refused", "too-deep")
    else:
        assert outcome[0] == "read", outcome


# --- the typed path: decode_batch's fast way, held to the reference way ----------------------


def _exactly(batch):
    """A batch as a comparison sees every bit of it: each field's type and repr (so 0.0 and
    -0.0, 3 and 3.0 differ), the outbox and the refusals."""
    readings = [tuple((k, type(v), repr(v)) for k, v in r.__dict__.items()) for r in batch.readings]
    return readings, batch.outbox, batch.rejected


def _reference(payload, site, gateway):
    try:
        return _exactly(wire._decode_reference(payload, site, gateway))
    except WireError as exc:
        return ("refused", exc.reason)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(readings(), max_size=12),
    st.one_of(st.none(), slugs),
    st.sampled_from(["object", "array"]),
)
def test_a_valid_batch_takes_the_typed_path_and_decodes_to_what_was_sent(batch, outbox, shape):
    """Every batch a gateway sends — any ids, kinds, units, values, times, faults — is read by
    the typed path (not left to the reference path) to exactly the readings that were sent.
    Values are a sensor's: at most a few decimals (a float of 17 digits and an exponent is as
    long as the longest int64, and such numbers are left to the reference path)."""
    batch = [r.model_copy(update={"value": round(r.value, 3)}) for r in batch]
    payload = encode_batch(batch, outbox=outbox)
    if shape == "array":
        payload = json.dumps(json.loads(payload)["readings"], ensure_ascii=False).encode()
        outbox = None
    typed = wire._decode_typed(payload, None, None)
    assert typed is not None
    assert typed == Batch(tuple(batch), outbox, ())
    assert _exactly(typed) == _reference(payload, None, None)
    if batch:  # the same batch on its gateway's topic: the typed path again
        site, gateway = batch[0].site, batch[0].gateway
        mine = [r for r in batch if (r.site, r.gateway) == (site, gateway)]
        payload = encode_batch(mine, outbox=outbox)
        assert wire._decode_typed(payload, site, gateway) == Batch(tuple(mine), outbox, ())


#: values a hostile or broken gateway puts in a reading's field, and valid ones on the edges
# fmt: off
odd_values = json_values | st.sampled_from([
    True, False, None, 0, 5, -7, -0.0, 21.25, 1e-7, 1e12, 1.0000001e12, -1e12, 1e308,
    2**63, 2**63 - 1, -1, 2**64, "", "s", "S", "-s", "s" * 65, "t-1_b", "g", "other",
    "temp\x00", "\x7f", "°C", "kWh", "good", "fault", "crc", "3.5", [], {}, ["t"], {"at": 1},
    "2026-01-15T02:00:00Z", "2026-01-15T02:00:00", "2026-01-15t02:00:00z",
    "2026-01-15T03:00:00.5+01:00", "2026-01-15T02:00:00.123456789+14:00",
    "0001-01-01T00:30:00+01:00", "2026-02-30T02:00:00Z", "2026-01-15T02:00:00.123Z",
])
# fmt: on
reading_fields = st.sampled_from([*sorted(GOOD), "quality", "fault", "extra"])


@st.composite
def odd_batches(draw):
    """A good batch of site s, gateway g, with some fields of some readings changed, dropped or
    doubled, as raw JSON text — sometimes with bytes slipped in."""
    items = [{**GOOD, "sensor": f"t{i}", "seq": i + 1} for i in range(draw(st.integers(1, 3)))]
    texts = []
    for item in items:
        for _ in range(draw(st.sampled_from([0, 0, 0, 0, 0, 1, 1, 2]))):
            field = draw(reading_fields)
            if draw(st.booleans()) and field in item:
                del item[field]
            else:
                item[field] = draw(odd_values)
        text = json.dumps(item, allow_nan=True, ensure_ascii=draw(st.booleans()))
        if draw(st.integers(0, 9)) == 0:  # a key twice: the last one counts, in both paths
            field = draw(reading_fields)
            text = text[:-1] + f', "{field}": ' + json.dumps(draw(odd_values)) + "}"
        texts.append(text)
    outbox = json.dumps(draw(st.sampled_from(["ob-1", "o" * (LIMITS.outbox + 1)]) | odd_values))
    head = draw(st.sampled_from(["[", '{"readings": [', f'{{"outbox": {outbox}, "readings": [']))
    raw = (head + ", ".join(texts) + ("]" if head == "[" else "]}")).encode()
    if draw(st.integers(0, 5)) == 0:
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=3)) + raw[at:]
    return raw


@settings(max_examples=1500, deadline=None)
@given(odd_batches(), st.sampled_from([("s", "g"), ("s", "g"), (None, None), ("s", "other")]))
def test_the_typed_path_gives_what_the_reference_gives_or_leaves_the_batch_to_it(raw, topic):
    """For any batch — fields of the wrong type, out of range, too long, with control
    characters, missing, doubled, unknown, from another gateway, bytes slipped in — the typed
    path either gives exactly what the reference path gives (types and signs included) or
    gives nothing and leaves the batch to it; `decode_batch` is then the reference's answer."""
    site, gateway = topic
    typed = wire._decode_typed(raw, site, gateway)
    reference = _reference(raw, site, gateway)
    if typed is not None:
        assert _exactly(typed) == reference
        assert not typed.rejected
    if reference[0] == "refused":
        with pytest.raises(WireError) as exc:
            decode_batch(raw, site=site, gateway=gateway)
        assert exc.value.reason == reference[1]
    else:
        assert _exactly(decode_batch(raw, site=site, gateway=gateway)) == reference


def test_the_typed_path_leaves_each_refusal_to_the_reference_path_with_its_reason():
    # every refusal the reference path knows, in a batch the typed path could otherwise read
    payload = json.dumps({"readings": [GOOD, {**GOOD, "seq": 2}]}).encode()
    assert wire._decode_typed(payload, "s", "g") is not None
    for change, _ in BAD_READINGS:
        for items in ([GOOD, {**GOOD, **change}], [{**GOOD, **change}, GOOD]):
            bad = json.dumps({"readings": items}).encode()
            assert wire._decode_typed(bad, "s", "g") is None, (change, items)
    for outbox in ("ob\x00", "o" * (LIMITS.outbox + 1), 7):
        bad = json.dumps({"outbox": outbox, "readings": [GOOD]}).encode()
        assert wire._decode_typed(bad, "s", "g") is None, outbox
    # a number of more characters than an int64 holds: the reference path reads it (or not)
    long_number = payload.replace(b'"value": 3.0', b'"value": 3.0000000000000000000000001', 1)
    assert wire._decode_typed(long_number, "s", "g") is None
    assert [r.value for r in decode_batch(long_number, site="s", gateway="g").readings] == [3, 3]
