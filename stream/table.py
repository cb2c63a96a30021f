"""The rule table as the engines use it: which rows apply to a sensor, cached per sensor."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from gateway.config import MANUAL_GATEWAY, SensorConfig
from gateway.models import Reading
from stream.config import (
    MATCH_ORDER,
    GatewayOfflineRule,
    OfflineRule,
    RuleBase,
    gateway_facts,
    sensor_facts,
)
from stream.matching import best_rows
from stream.rules import Rules

__all__ = ["RuleTable"]

log = logging.getLogger("husvakt.stream")


def _condition(row: RuleBase) -> str:
    return str(getattr(row, "condition", ""))


class RuleTable:
    """Rule rows plus the sensor registry they are matched against."""

    def __init__(
        self,
        rows: Sequence[RuleBase],
        sensors: Mapping[tuple[str, str], SensorConfig],
        timezones: Mapping[str, str] | None = None,
    ) -> None:
        self._rows = tuple(rows)
        self._sensors = dict(sensors)
        self._timezones = dict(timezones or {})
        #: sensors another row's `when` looks at, and their latest good values by (site, id)
        self._peers = {w.sensor for w in (getattr(r, "when", None) for r in self._rows) if w}
        self._latest: dict[tuple[str, str], float] = {}
        self._conditions = tuple(
            dict.fromkeys(_condition(r) for r in self._rows if _condition(r) != "gateway_offline")
        )
        self._cache: dict[tuple[str, str, str], Rules] = {}
        #: one `Rules` per distinct choice of rows (by the rows' identity): sensors ruled
        #: alike share it, and with it its compiled pass, so a server of many sensors compiles
        #: a pass per kind of sensor, not one per sensor
        self._shared: dict[tuple[int, ...], Rules] = {}
        self._offline: dict[tuple[str, str, str], tuple[OfflineRule, ...]] = {}
        self._gateways: dict[tuple[str, str], GatewayOfflineRule | None] = {}

    @property
    def rows(self) -> tuple[RuleBase, ...]:
        return self._rows

    def sensor(self, site: str, sensor: str) -> SensorConfig | None:
        return self._sensors.get((site, sensor))

    def rules_for(self, site: str, sensor: str, kind: str) -> Rules:
        """The winning enabled row per condition for this sensor."""
        key = (site, sensor, kind)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        facts = sensor_facts(site, sensor, kind, self._sensors.get((site, sensor)))
        chosen: list[RuleBase] = []
        for condition in self._conditions:
            tied = best_rows(
                (r for r in self._rows if _condition(r) == condition), facts, MATCH_ORDER
            )
            if len(tied) > 1:
                # Only possible for sensors missing from the config (checked at load time).
                log.warning(
                    "rules %s tie for %s/%s; using %s",
                    [r.id for r in tied],
                    site,
                    sensor,
                    tied[0].id,
                )
            if tied and tied[0].enabled:
                timezone = self._timezones.get(site, "UTC")
                row = tied[0].bound(timezone, self._sensors.get((site, sensor)), self._peek(site))
                if row is not None:
                    chosen.append(row)
        ids = tuple(map(id, chosen))
        result = self._shared.get(ids)
        if result is None:
            result = self._shared[ids] = Rules(chosen)
        self._cache[key] = result
        return result

    def offline_rows_for(self, site: str, sensor: str, kind: str) -> tuple[OfflineRule, ...]:
        """The sensor's offline rows (of `rules_for`): what every tick looks at per sensor."""
        key = (site, sensor, kind)
        rows = self._offline.get(key)
        if rows is None:
            rows = self._offline[key] = tuple(
                r for r in self.rules_for(site, sensor, kind) if isinstance(r, OfflineRule)
            )
        return rows

    def _peek(self, site: str) -> Callable[[str], float | None]:
        latest = self._latest
        return lambda sensor: latest.get((site, sensor))

    def note(self, reading: Reading, sensor: str) -> None:
        """Remember a good reading's value if a row's `when` looks at its sensor (`sensor`:
        the reading's, as its caller read it already)."""
        if sensor in self._peers and reading.quality == "good":
            self._latest[(reading.site, reading.sensor)] = reading.value

    def gateway_rule(self, site: str, gateway: str) -> GatewayOfflineRule | None:
        """The winning enabled `gateway_offline` row for this gateway, if any."""
        key = (site, gateway)
        if gateway == MANUAL_GATEWAY:
            return None  # readings entered by hand: no gateway to go offline
        if key not in self._gateways:
            rows = [r for r in self._rows if isinstance(r, GatewayOfflineRule)]
            tied = best_rows(rows, gateway_facts(site, gateway), MATCH_ORDER)
            self._gateways[key] = tied[0] if tied and tied[0].enabled else None
        return self._gateways[key]
