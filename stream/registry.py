"""The registry is the allow-list: only sites, gateways and sensors the config knows are
evaluated.

Anyone who can publish to the broker can name any site, gateway or sensor; what the config does
not know is refused — the engines quarantine it under `site/gateway/sensor`, so
`husvakt quarantine list` shows an admin each unknown id per gateway, with a count — and never
gets rule state. A sensor belongs to one gateway and has one kind: a reading of it from
another gateway, or of another kind, is refused too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gateway.config import SensorConfig
from gateway.models import Reading

__all__ = ["Registry"]


class Registry:
    """`sensors`: (site, sensor id) → sensor with its site and gateway filled in. `gateways`:
    (site, gateway id) pairs known besides those the sensors name."""

    def __init__(
        self,
        sensors: Mapping[tuple[str, str], SensorConfig],
        *,
        gateways: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._sensors = dict(sensors)
        self._gateways = set(gateways)
        self._open_sites: set[str] = set()
        for (site, _), sensor in self._sensors.items():
            if sensor.gateway is None:
                self._open_sites.add(site)  # read by a gateway the config does not name
            else:
                self._gateways.add((site, sensor.gateway))
        self._sites = {site for site, _ in self._sensors} | {site for site, _ in self._gateways}

    def sites(self) -> list[str]:
        return sorted(self._sites)

    def refuse_gateway(self, site: str, gateway: str) -> str | None:
        """Why a message from this gateway is refused, or None."""
        if site not in self._sites:
            return "unknown-site"
        if (site, gateway) not in self._gateways and site not in self._open_sites:
            return "unknown-gateway"
        return None

    def refuse(self, reading: Reading) -> str | None:
        """Why this reading is refused, or None when it may be evaluated."""
        reason = self.refuse_gateway(reading.site, reading.gateway)
        if reason is not None:
            return reason
        sensor = self._sensors.get((reading.site, reading.sensor))
        if sensor is None:
            return "unknown-sensor"
        if sensor.gateway is not None and sensor.gateway != reading.gateway:
            return "wrong-gateway"
        if sensor.kind != reading.kind:
            return "wrong-kind"
        return None
