"""The Faust entry point: `HUSVAKT_CONFIG=site.yaml faust -A husvakt.faust_app worker`.

Runs the rules only (readings topic → alarms topic): add as many such workers as the region
needs; `husvakt stream --engine faust` runs one with the MQTT ingest and the case bridge.
Under systemd (`Type=notify`) the worker says when it is ready and feeds the watchdog;
`HUSVAKT_METRICS=HOST:PORT` serves its Prometheus metrics, `/healthz` and `/readyz` there.
"""

from __future__ import annotations

import os
from pathlib import Path

from husvakt.config import load_config
from husvakt.metrics import Metrics, parse_listen, serve_on_faust
from husvakt.systemd import supervise_faust
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


def _metrics_listen() -> str | None:
    """`HUSVAKT_METRICS`, checked (a worker of its own port: the config's `metrics.listen` is
    `husvakt stream`'s)."""
    listen = os.environ.get("HUSVAKT_METRICS") or None
    if listen is not None:
        try:
            parse_listen(listen)
        except ValueError as exc:
            raise SystemExit(f"husvakt: HUSVAKT_METRICS {exc}") from None
    return listen


engine = _engine()
app = engine.app
supervise_faust(app)
if (listen := _metrics_listen()) is not None:
    metrics = Metrics()
    metrics.engine(engine)
    metrics.quarantine(engine.quarantine, "stream")
    serve_on_faust(app, metrics, listen)
