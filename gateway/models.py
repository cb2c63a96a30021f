"""The `Reading` wire contract (v1): one measurement, as uplinked and as passed in-process."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    model_validator,
)

__all__ = ["SLUG_PATTERN", "Frozen", "Reading", "Slug", "UtcTime", "format_ts"]

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$"
_SLUG = re.compile(SLUG_PATTERN)


class Frozen(BaseModel):
    """The base of every configuration and contract model: immutable, and refusing fields it
    does not know (a typo in a config is an error, not a silently ignored key)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid id: use lowercase letters, digits, '-' and '_' "
            "(starting and ending with a letter or digit, at most 64 characters)"
        )
    return value


def _check_utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a time zone (RFC 3339, e.g. 2026-01-15T02:00:00Z)")
    return value.astimezone(UTC)


def format_ts(value: datetime) -> str:
    """RFC 3339 in UTC with a `Z` suffix; milliseconds only when present (cut, not rounded)."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # a naive copy formats without the `+00:00` an aware one would get
    naive = value.replace(tzinfo=None)
    if value.microsecond:
        return naive.isoformat(timespec="milliseconds") + "Z"
    return naive.isoformat(timespec="seconds") + "Z"


Slug = Annotated[str, AfterValidator(_check_slug)]
UtcTime = Annotated[
    datetime,
    AfterValidator(_check_utc),
    PlainSerializer(format_ts, return_type=str, when_used="json"),
]


class Reading(BaseModel):
    """One measurement of one sensor, normalised (temperatures in °C).

    A reading with `quality="fault"` carries the reason in `fault`; its `value` is whatever the
    device reported (or 0.0 when it reported nothing usable) and must never be read as a
    temperature.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    site: Slug
    gateway: Slug
    sensor: Slug
    kind: str
    value: float
    unit: str
    ts: UtcTime
    seq: int
    quality: Literal["good", "fault"] = "good"
    fault: str | None = None

    @model_validator(mode="after")
    def _fault_only_with_fault_quality(self) -> Self:
        if not math.isfinite(self.value):
            raise ValueError("value must be a finite number (NaN and Infinity are not values)")
        if self.quality == "fault" and not self.fault:
            raise ValueError("a reading with quality 'fault' must name the fault")
        if self.quality == "good" and self.fault is not None:
            raise ValueError("'fault' is only allowed with quality 'fault'")
        return self

    @classmethod
    def trusted(  # noqa: PLR0917 - one argument per field, as the wire has them
        cls,
        site: str,
        gateway: str,
        sensor: str,
        kind: str,
        value: float,
        unit: str,
        ts: datetime,
        seq: int,
        quality: Literal["good", "fault"] = "good",
        fault: str | None = None,
    ) -> Reading:
        """A reading of values its caller has checked (the wire decoder). What pydantic's
        `model_construct` does for this model — it has no aliases and every field is given —
        without that method's generic loop over the fields, which was a tenth of the stream's
        time per reading. tests/gateway/test_models.py holds it equal to a validated reading."""
        reading = _new(cls)
        _set_dict(
            reading,
            {
                "site": site,
                "gateway": gateway,
                "sensor": sensor,
                "kind": kind,
                "value": value,
                "unit": unit,
                "ts": ts,
                "seq": seq,
                "quality": quality,
                "fault": fault,
            },
        )
        _set_fields(reading, _ALL_SET)
        _set_extra(reading, None)
        _set_private(reading, None)
        return reading


# BaseModel's own slots, set through their descriptors: a third cheaper than
# `object.__setattr__` by name, and a reading is made per reading received.
_new = object.__new__
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__
_FIELDS = frozenset(Reading.model_fields)
#: The fields set of every reading made here, one set shared by all: a reading is frozen (no
#: assignment adds to it) and `model_copy` copies the set before it adds the names it
#: updates — a set of its own per reading was a tenth of making one, and 700 bytes.
_ALL_SET = set(_FIELDS)
