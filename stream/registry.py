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
from operator import itemgetter

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
        self._gateways = set(gateways)
        self._open_sites: set[str] = set()
        for (site, _), sensor in sensors.items():
            if sensor.gateway is None:
                self._open_sites.add(site)  # read by a gateway the config does not name
            else:
                self._gateways.add((site, sensor.gateway))
        self._sites = {site for site, _ in sensors} | {site for site, _ in self._gateways}
        #: (site, sensor) → (its gateway or None, its kind)
        self._owners = {key: (s.gateway, s.kind) for key, s in sensors.items()}
        #: (site, gateway, sensor, kind) of every reading a sensor with its gateway named may
        #: send: what nearly every reading is, admitted with one lookup
        self._admitted = {
            (site, gateway, sensor, kind)
            for (site, sensor), (gateway, kind) in self._owners.items()
            if gateway is not None
        }

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
        # the four ids in one read of the model (an attribute of a pydantic model costs about
        # what a call does, and this runs for every reading the server takes)
        ids = _IDS(reading.__dict__)
        if ids in self._admitted:
            return None
        site, gateway, sensor, kind = ids
        reason = self.refuse_gateway(site, gateway)
        if reason is not None:
            return reason
        owner = self._owners.get((site, sensor))
        if owner is None:
            return "unknown-sensor"
        if owner[0] is not None and owner[0] != gateway:
            return "wrong-gateway"
        if owner[1] != kind:
            return "wrong-kind"
        return None


_IDS = itemgetter("site", "gateway", "sensor", "kind")
