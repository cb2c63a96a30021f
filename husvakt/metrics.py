"""What a running husvakt says about itself: Prometheus metrics, `/healthz` and `/readyz`.

Every long-running command serves them on `--metrics HOST:PORT` (or the config's `metrics:`).
The parts of a process register what they can report — a gateway its sources, outbox and
uplink; an engine its evaluations and alarms; a case desk its cases and notifications — and the
collector reads their counters when Prometheus scrapes, so a reading costs nothing for being
counted. Two histograms are observed as things happen: reading → uplink acknowledgement (per
batch, for its oldest reading) and reading → case (per alarm that opened or changed a case).

`/healthz` answers 200 while the process's event loop runs; `/readyz` answers 200 when every
part says it is ready (the uplink connected, the store open, the broker subscribed) and 503
with the reasons otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from casebridge.bridge import CaseBridge
    from gateway.outbox import SqliteOutbox
    from gateway.quarantine import Quarantine
    from gateway.service import Gateway
    from stream.engine import EmbeddedEngine
    from stream.faust_engine import FaustEngine

__all__ = ["Metrics", "metrics_served", "parse_listen", "serve_metrics", "watch_cases"]

log = logging.getLogger("husvakt.metrics")

#: Seconds: from a second (an alarm on time) to an hour (a backlog after an outage).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

Part = Callable[[], Iterable[Metric]]
Ready = Callable[[], str | None]


@dataclass
class Metrics:
    """One process's metrics registry, its parts and its readiness checks."""

    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )
    parts: list[Part] = field(default_factory=list)
    checks: list[Ready] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.uplink_latency = Histogram(
            "husvakt_uplink_latency_seconds",
            "From a reading's measurement to the broker's acknowledgement of the batch that "
            "carried it (observed per batch, for its oldest reading)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.case_latency = Histogram(
            "husvakt_case_latency_seconds",
            "From the reading that raised or changed an alarm to its case being recorded "
            "(and its notification queued)",
            ["condition"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Collector(self.parts))

    def ready(self) -> list[str]:
        """Why the process is not ready (empty: it is)."""
        reasons = []
        for check in self.checks:
            try:
                reason = check()
            except Exception as exc:  # noqa: BLE001 - a check that fails says so
                reason = f"{type(exc).__name__}: {exc}"
            if reason:
                reasons.append(reason)
        return reasons

    # --- the parts -----------------------------------------------------------------------

    def gateway(self, gateway: Gateway, outbox: SqliteOutbox, uplink: Any | None) -> None:
        """A gateway's sources, outbox and uplink (`uplink`: its `connected` and `last_ack`)."""

        def collect() -> Iterator[Metric]:
            readings = CounterMetricFamily(
                "husvakt_gateway_readings", "Readings the gateway made", labels=["quality"]
            )
            for quality, n in sorted(gateway.counts.items()):
                readings.add_metric([quality], n)
            yield readings
            samples = CounterMetricFamily(
                "husvakt_source_readings", "Readings per source", labels=["source", "quality"]
            )
            up = GaugeMetricFamily(
                "husvakt_source_up", "1: the source's latest reading was good", labels=["source"]
            )
            for name, health in sorted(gateway.source_health.items()):
                samples.add_metric([name, "good"], health.good)
                samples.add_metric([name, "fault"], health.fault)
                up.add_metric([name], 1.0 if health.up else 0.0)
            yield samples
            yield up
            yield GaugeMetricFamily(
                "husvakt_gateway_unsynced_readings",
                "Readings taken before the clock synchronised, waiting for their true time",
                value=gateway.held,
            )
            stats = outbox.stats
            yield GaugeMetricFamily(
                "husvakt_outbox_readings", "Readings held in the outbox", value=stats.buffered
            )
            yield GaugeMetricFamily(
                "husvakt_outbox_bytes", "Payload bytes held in the outbox", value=stats.bytes
            )
            yield CounterMetricFamily(
                "husvakt_outbox_thinned", "Readings thinned from a full outbox", value=stats.thinned
            )
            yield GaugeMetricFamily(
                "husvakt_outbox_no_room",
                "1: the disk is full; the outbox thins harder until there is room",
                value=1.0 if stats.no_room else 0.0,
            )
            yield CounterMetricFamily(
                "husvakt_outbox_syncs", "Times the outbox synced to disk", value=stats.syncs
            )
            if uplink is not None:
                yield GaugeMetricFamily(
                    "husvakt_uplink_connected",
                    "1: the uplink is connected",
                    value=1.0 if getattr(uplink, "connected", False) else 0.0,
                )
                last = getattr(uplink, "last_ack", None)
                if last is not None:
                    yield GaugeMetricFamily(
                        "husvakt_uplink_last_ack_timestamp_seconds",
                        "When the broker last acknowledged a batch",
                        value=last,
                    )
                yield CounterMetricFamily(
                    "husvakt_uplink_readings", "Readings uplinked", value=uplink.published
                )

        self.parts.append(collect)
        self.quarantine(gateway.quarantine, "gateway")
        if uplink is not None:
            self.checks.append(
                lambda: None if getattr(uplink, "connected", True) else "uplink not connected"
            )

    def quarantine(self, quarantine: Quarantine, component: str) -> None:
        def collect() -> Iterator[Metric]:
            family = CounterMetricFamily(
                "husvakt_quarantined",
                "Input refused and quarantined, per reason",
                labels=["component", "reason"],
            )
            for reason, n in sorted(quarantine.counts.items()):
                family.add_metric([component, reason], n)
            yield family

        self.parts.append(collect)

    def engine(self, engine: EmbeddedEngine | FaustEngine) -> None:
        def collect() -> Iterator[Metric]:
            outcomes = CounterMetricFamily(
                "husvakt_rule_readings",
                "Readings the rules took, by outcome (evaluated, duplicate, out_of_order, …)",
                labels=["outcome"],
            )
            for key, n in sorted(engine.counts.items()):
                if not key.startswith("alarms_"):
                    outcomes.add_metric([key], n)
            yield outcomes
            alarms = CounterMetricFamily(
                "husvakt_alarms", "Alarms the rules raised, updated and cleared",
                labels=["condition", "state"],
            )  # fmt: skip
            for (condition, state), n in sorted(engine.alarm_counts.items()):
                alarms.add_metric([condition, state], n)
            yield alarms

        self.parts.append(collect)

    def cases(
        self, bridge: CaseBridge, notifier: Any | None = None, sinks: Sequence[Any] = ()
    ) -> None:
        def collect() -> Iterator[Metric]:
            family = CounterMetricFamily(
                "husvakt_case_outcomes",
                "What alarms did to cases (opened, updated, reopened, duplicate, …)",
                labels=["condition", "result"],
            )
            for (condition, result), n in sorted(bridge.by_condition.items()):
                family.add_metric([condition, result], n)
            yield family
            if notifier is not None:
                sent = CounterMetricFamily(
                    "husvakt_notifications", "Notification attempts", labels=["channel", "result"]
                )
                for (channel, result), n in sorted(notifier.counts.items()):
                    sent.add_metric([channel, result], n)
                yield sent
            if sinks:
                mirrors = CounterMetricFamily(
                    "husvakt_sink_mirrors",
                    "Cases mirrored to external systems, and failures (per case, and the whole "
                    "system unavailable)",
                    labels=["sink", "result"],
                )
                up = GaugeMetricFamily(
                    "husvakt_sink_up",
                    "1 while the sink's system took our last round",
                    labels=["sink"],
                )
                for runner in sinks:
                    for result, n in sorted(runner.counts.items()):
                        mirrors.add_metric([runner.id, result], n)
                    up.add_metric([runner.id], 1.0 if runner.available else 0.0)
                yield mirrors
                yield up

        self.parts.append(collect)


class _Collector(Collector):
    def __init__(self, parts: list[Part]) -> None:
        self._parts = parts

    def collect(self) -> Iterator[Metric]:
        for part in list(self._parts):
            try:
                yield from part()
            except Exception:  # a part that cannot say stops no scrape
                log.exception("collecting metrics failed")

    def describe(self) -> Iterator[Metric]:
        return iter(())


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`127.0.0.1:9108`, `[::1]:9108`, `:9108` = loopback). Raises ValueError."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: give HOST:PORT, e.g. 127.0.0.1:9108")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def _app(metrics: Metrics) -> Any:
    from starlette.applications import Starlette  # noqa: PLC0415 - only where served
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import PlainTextResponse, Response  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    async def healthz(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    async def readyz(_: Request) -> PlainTextResponse:
        reasons = metrics.ready()
        if reasons:
            return PlainTextResponse("\n".join(reasons) + "\n", status_code=503)
        return PlainTextResponse("ready\n")

    async def scrape(_: Request) -> Response:
        body = await asyncio.to_thread(generate_latest, metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", scrape),
        ]
    )


async def serve_metrics(metrics: Metrics, listen: str, stop: asyncio.Event) -> None:
    """Serve `/metrics`, `/healthz` and `/readyz` on `listen` until `stop`."""
    import uvicorn  # noqa: PLC0415 - only where served

    host, port = parse_listen(listen)
    config = uvicorn.Config(
        _app(metrics), host=host, port=port, log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="metrics")
    try:
        await stop.wait()
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


def serve_on_faust(app: Any, metrics: Metrics, listen: str) -> None:
    """Serve `metrics` on `listen` as a task of the Faust `app` (Faust owns the event loop),
    until Faust stops its tasks."""

    async def serve() -> None:
        await serve_metrics(metrics, listen, asyncio.Event())

    app.task(serve)


def watch_cases(
    metrics: Metrics, bridge: CaseBridge, notifier: Any | None, sinks: Sequence[Any] = ()
) -> None:
    """A case desk's cases, notifications and sinks, and reading → case latency."""
    metrics.cases(bridge, notifier, sinks)

    def recorded(alarm: Any, at: Any) -> None:
        seconds = max(0.0, (at - alarm.ts).total_seconds())
        metrics.case_latency.labels(alarm.condition).observe(seconds)

    bridge.on_recorded = recorded


@contextlib.asynccontextmanager
async def metrics_served(
    metrics: Metrics, listen: str | None, stop: asyncio.Event
) -> AsyncIterator[None]:
    """Serve `metrics` on `listen` (None: not at all) while the body runs."""
    if listen is None:
        yield
        return
    done = asyncio.Event()
    task = asyncio.create_task(serve_metrics(metrics, listen, done), name="metrics")
    log.info("metrics, /healthz and /readyz on http://%s:%d", *parse_listen(listen))
    try:
        yield
    finally:
        done.set()
        await task
