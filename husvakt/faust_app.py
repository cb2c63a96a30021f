"""The Faust entry point: `HUSVAKT_CONFIG=site.yaml faust -A husvakt.faust_app worker`.

Runs the rules only (readings topic → alarms topic): add as many such workers as the region
needs; `husvakt stream --engine faust` runs one with the MQTT ingest and the case bridge.
"""

from __future__ import annotations

import os
from pathlib import Path

from husvakt.config import load_config
from stream.faust_engine import FaustEngine

__all__ = ["app", "engine"]


def _engine() -> FaustEngine:
    config = load_config(Path(os.environ.get("HUSVAKT_CONFIG", "husvakt.yaml")))
    return FaustEngine(
        rules=config.rules,
        sensors=config.sensor_index(),
        config=config.stream,
        registry=config.registry(),
        timezones=config.timezones(),
    )


engine = _engine()
app = engine.app
