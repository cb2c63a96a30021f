"""The commands that run husvakt: `demo`, `run`, `gateway`, `stream`, `replay`, `sim` and
`record`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any, get_args

from gateway.clock import SystemClock
from husvakt.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    address,
    log_context,
    metrics_listen,
    metrics_option,
    no_gateway,
    program,
    say,
    stop_on_signals,
)
from husvakt.config import HusvaktConfig, load_config
from husvakt.metrics import Metrics, metrics_served, serve_on_faust, watch_cases
from husvakt.output import cases_json, cases_table
from husvakt.systemd import supervise_faust, supervised
from stream.config import StreamConfig

__all__ = ["add"]


def add(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="replay a night at a school through simulated devices and show the cases it opens",
        description="Start an embedded MQTT broker, three simulated thermometers (MQTT JSON, "
        "Modbus TCP, serial line) and the all-in-one runtime; replay a night in about 20 s "
        "(a basement cooling to 3 °C, a boiler room overheating) and print the cases opened.",
    )
    demo.add_argument(
        "--db",
        type=Path,
        default=Path("husvakt-demo.db"),
        help="SQLite case store to create (replaced if it exists; default %(default)s)",
    )
    demo.add_argument(
        "--broker",
        type=address,
        metavar="HOST:PORT",
        help="use this MQTT broker instead of starting an embedded one",
    )
    demo.add_argument(
        "--speed",
        type=float,
        default=1440.0,
        help="simulated seconds per real second (default %(default)s: 8 h in 20 s)",
    )
    demo.add_argument(
        "--config",
        type=Path,
        default=None,
        help="demo site config (default: the package's husvakt/data/demo.yaml)",
    )
    demo.add_argument(
        "--night",
        type=Path,
        default=None,
        help="the scenario its devices play (default husvakt/data/demo-night.yaml)",
    )
    demo.add_argument("--json", action="store_true", help="print the cases as JSON")
    demo.set_defaults(run=demo_command)

    stream = sub.add_parser(
        "stream",
        help="run the rules and the case bridge on the gateways' uplink (the server side)",
        description="Subscribe to every gateway's uplink topics on the configured broker "
        "(stream.broker), apply the rules and record cases in the configured store, with "
        "notifications and escalations, until Ctrl-C. With --engine faust, run a Faust worker on "
        "Kafka (stream.kafka) instead, with the MQTT → Kafka ingest and the case bridge "
        "consuming the alarms topic; more workers: `HUSVAKT_CONFIG=FILE "
        "[HUSVAKT_METRICS=HOST:PORT] faust -A husvakt.faust_app worker`.",
    )
    stream.add_argument("--config", type=Path, required=True, help="site config YAML")
    stream.add_argument(
        "--engine",
        choices=get_args(StreamConfig.model_fields["engine"].annotation),
        default=None,
        help="default: stream.engine from the config (embedded)",
    )
    metrics_option(stream)
    stream.set_defaults(run=stream_command)

    run = sub.add_parser(
        "run",
        help="run gateway, rules and case bridge in one process (until Ctrl-C)",
        description="The all-in-one runtime on the real clock: read the configured sensors, "
        "apply the rules and open cases in the configured SQLite store.",
    )
    run.add_argument("--config", type=Path, required=True, help="site config YAML")
    metrics_option(run)
    run.set_defaults(run=run_command)

    gw = sub.add_parser(
        "gateway",
        help="read the sensors and uplink their readings (what runs on the Raspberry Pi)",
        description="Read every configured sensor (MQTT, Modbus, serial), keep each reading in "
        "the durable outbox and uplink it over MQTT (gateway.uplink) until confirmed. Stops "
        "cleanly on Ctrl-C or SIGTERM; what was not sent yet is kept for the next start.",
    )
    gw.add_argument("--config", type=Path, required=True, help="site config YAML")
    metrics_option(gw)
    gw.set_defaults(run=gateway_command)

    rp = sub.add_parser(
        "replay",
        help="replay a scenario or a recorded trace through the rules and cases (virtual clock)",
        description="Run a scenario (YAML) or a trace recorded by `husvakt record` (JSON Lines) "
        "through the real rules and case bridge on a virtual clock, as fast as the machine "
        "allows, and print the cases, escalations and notifications. With --expect, compare "
        "against an expectations file and exit 1 with a readable diff on mismatch.",
    )
    rp.add_argument("source", type=Path, help="SCENARIO.yaml or TRACE.jsonl")
    rp.add_argument("--config", type=Path, required=True, help="site config YAML")
    rp.add_argument("--expect", type=Path, help="expectations YAML")
    rp.add_argument("--json", action="store_true", help="the whole result as JSON")
    rp.add_argument(
        "--db",
        type=Path,
        help="keep the cases in this SQLite file (to look at them, e.g. with `cases serve`)",
    )
    rp.set_defaults(run=replay_command)

    sim = sub.add_parser(
        "sim",
        help="play a scenario's devices live on their real protocols",
        description="Start a scenario's simulated devices — MQTT publishers, Modbus TCP servers, "
        "serial lines on pseudo-terminals, 1-Wire files — following its signals and faults on "
        "an accelerated clock, and print where each one is. Runs until the scenario ends.",
    )
    sim.add_argument("--scenario", type=Path, required=True, help="scenario YAML")
    sim.add_argument(
        "--broker",
        type=address,
        metavar="HOST:PORT",
        help="MQTT broker for MQTT devices (default: start an embedded one)",
    )
    sim.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="simulated seconds per real second (default %(default)s)",
    )
    sim.set_defaults(run=sim_command)

    rec = sub.add_parser(
        "record",
        help="record uplinked readings from a broker to a trace file that replay accepts",
        description="Subscribe to husvakt/v1/+/+/readings on a broker and append every reading, "
        "with when it was received, to a JSON Lines trace, until Ctrl-C (or --count).",
    )
    rec.add_argument("--broker", type=address, required=True, metavar="HOST:PORT")
    rec.add_argument("--out", type=Path, required=True, help="trace file (appended to)")
    rec.add_argument("--topic", default="husvakt/v1/+/+/readings")
    rec.add_argument("--count", type=int, default=None, help="stop after this many readings")
    rec.set_defaults(run=record_command)


async def demo_command(args: argparse.Namespace) -> int:
    from husvakt.demo import (  # noqa: PLC0415 - keep `husvakt --help` fast
        DEFAULT_CONFIG,
        DEFAULT_NIGHT,
        run_demo,
    )

    if not args.json:
        say(
            "husvakt demo: replaying the night of 14 January 2026 at Nordskolan "
            f"(8 h at {args.speed:g}× speed)…"
        )
    result = await run_demo(
        db=args.db,
        config_path=args.config or DEFAULT_CONFIG,
        night=args.night or DEFAULT_NIGHT,
        speed=args.speed,
        broker=args.broker,
    )
    if args.json:
        say(cases_json(result.cases))
        return EXIT_OK
    say(
        f"readings: {result.readings} good, {result.faults} faults; "
        f"{result.quarantined} unusable inputs quarantined\n"
    )
    say(cases_table(result.cases))
    say(f"\n{len(result.cases)} case(s) in {result.db.resolve()}")
    say(f"list them again: {program()} cases list --db {result.db}")
    return EXIT_OK


def stream_command(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if (args.engine or config.stream.engine) == "faust":
        return _faust_worker(config, metrics_listen(args, config))
    from husvakt.assemble import open_cases  # noqa: PLC0415 - keep `husvakt --help` fast
    from husvakt.server import EmbeddedServer  # noqa: PLC0415

    async def serve() -> None:
        store = await open_cases(config)
        stop = stop_on_signals()
        try:
            server = EmbeddedServer(config=config, clock=SystemClock(), store=store)
            async with (
                metrics_served(server_metrics(server), metrics_listen(args, config), stop),
                supervised(stop, server.subscriber.subscribed),
            ):
                await server.run(stop)
        finally:
            await store.aclose()

    asyncio.run(serve())
    return EXIT_OK


def server_metrics(server: Any) -> Metrics:
    """The metrics of `husvakt stream` (embedded or Faust): rules, quarantine, cases, and
    ready once subscribed to the uplink broker."""
    metrics = Metrics()
    metrics.engine(server.engine)
    metrics.quarantine(server.quarantine, "stream")
    watch_cases(metrics, server.bridge, server.desk.notifier, server.desk.sinks)
    subscribed = server.subscriber.subscribed
    metrics.checks.append(lambda: None if subscribed.is_set() else "uplink broker: not subscribed")
    return metrics


def _faust_worker(config: HusvaktConfig, listen: str | None = None) -> int:
    """A Faust worker with the MQTT ingest and the case bridge, until SIGINT/SIGTERM. Faust
    owns its event loop and its signal handling; the metrics (`listen`) run as its task."""
    import faust  # noqa: PLC0415 - an optional extra

    from casebridge.store.sql import open_store  # noqa: PLC0415
    from husvakt.server import FaustServer  # noqa: PLC0415
    from stream.kafka_admin import ensure_topics  # noqa: PLC0415

    asyncio.run(ensure_topics(config.stream.kafka))
    asyncio.set_event_loop(asyncio.new_event_loop())
    server = FaustServer(config=config, clock=SystemClock(), store=open_store(config.cases))
    if listen is not None:
        serve_on_faust(server.engine.app, server_metrics(server), listen)
    supervise_faust(server.engine.app, ready=server.subscriber.subscribed)
    worker = faust.Worker(server.engine.app, loglevel="INFO", quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_FAILED
    return EXIT_OK


async def gateway_command(args: argparse.Namespace) -> int:
    from gateway.service import run_gateway  # noqa: PLC0415 - keep `husvakt --help` fast

    config = load_config(args.config, cases=False)  # a Pi's file: no teams, no routing
    if config.gateway is None:
        return no_gateway(args.config, "gateway")
    sensors = list(config.sensor_index().values())
    log_context(site=config.gateway.site, gateway=config.gateway.id)
    stop = stop_on_signals()
    metrics = Metrics()
    started = asyncio.Event()

    def watched(gateway: Any, outbox: Any, uplink: Any) -> None:
        metrics.gateway(gateway, outbox, uplink)
        uplink.on_ack = metrics.uplink_latency.observe
        started.set()  # the outbox is open and the sources are built: systemd hears READY

    async with (
        metrics_served(metrics, metrics_listen(args, config), stop),
        supervised(stop, started),
    ):
        await run_gateway(
            config=config.gateway, sensors=sensors, clock=SystemClock(), stop=stop,
            on_start=watched,
        )  # fmt: skip
    return EXIT_OK


async def run_command(args: argparse.Namespace) -> int:
    from gateway.outbox import SqliteOutbox  # noqa: PLC0415 - keep `husvakt --help` fast
    from husvakt.allinone import AllInOne  # noqa: PLC0415
    from husvakt.assemble import open_cases  # noqa: PLC0415

    config = load_config(args.config)
    if config.gateway is None:
        return no_gateway(args.config, "run")
    store = await open_cases(config)
    stop = stop_on_signals()
    outbox = SqliteOutbox.of(config.gateway.outbox)
    await outbox.open()
    try:
        runtime = AllInOne(config=config, clock=SystemClock(), store=store, outbox=outbox)
        metrics = Metrics()
        metrics.gateway(runtime.gateway, outbox, None)
        metrics.engine(runtime.engine)
        watch_cases(metrics, runtime.bridge, runtime.desk.notifier, runtime.desk.sinks)
        started = asyncio.Event()
        started.set()  # its store and outbox are open
        async with (
            metrics_served(metrics, metrics_listen(args, config), stop),
            supervised(stop, started),
        ):
            await runtime.run(stop)
    finally:
        await store.aclose()
        await outbox.close()
    return EXIT_OK


async def replay_command(args: argparse.Namespace) -> int:
    from husvakt import replay as rp  # noqa: PLC0415 - keep `husvakt --help` fast

    store = None
    if args.db is not None:
        from casebridge.store.sql import SqliteCaseStore  # noqa: PLC0415

        store = SqliteCaseStore(args.db)
    try:
        result = await rp.replay_path(args.source, load_config(args.config), store=store)
    except ValueError as exc:
        sys.stderr.write(f"husvakt: {exc}\n")
        return EXIT_FAILED
    finally:
        if store is not None:
            await store.aclose()
    sys.stdout.write(result.model_dump_json(indent=2) + "\n" if args.json else result.render())
    if args.expect is None:
        return EXIT_OK
    problems = rp.compare(result, rp.load_expectations(args.expect))
    if problems:
        sys.stderr.write(f"replay does not match {args.expect}:\n" + "\n".join(problems) + "\n")
        return EXIT_FAILED
    sys.stderr.write(f"replay matches {args.expect}\n")
    return EXIT_OK


async def sim_command(args: argparse.Namespace) -> int:
    from gateway.clock import ScaledClock  # noqa: PLC0415
    from husvakt.broker import EmbeddedBroker  # noqa: PLC0415
    from husvakt.replay import load_scenario_file  # noqa: PLC0415
    from husvakt.sim import Endpoint, run_sim  # noqa: PLC0415

    scenario = load_scenario_file(args.scenario)
    endpoints: list[Endpoint] = []
    ready = asyncio.Event()

    async def announce() -> None:
        await ready.wait()
        say(f"husvakt sim: {scenario.name}, {len(endpoints)} devices at {args.speed:g}× speed")
        for e in endpoints:
            say(f"  {e.sensor:<20} {e.protocol:<8} {e.where}")
        sys.stdout.flush()

    async with contextlib.AsyncExitStack() as stack:
        broker = args.broker
        if broker is None and any(d.protocol == "mqtt" for d in scenario.devices):
            embedded = await stack.enter_async_context(EmbeddedBroker())
            broker = (embedded.host, embedded.port)
            say(f"embedded MQTT broker on {embedded.host}:{embedded.port}")
        teller = asyncio.create_task(announce())
        clock = ScaledClock(start=scenario.start, speed=args.speed)
        await run_sim(scenario, clock=clock, broker=broker, ready=ready, endpoints=endpoints)
        await teller
    say("husvakt sim: scenario finished")
    return EXIT_OK


async def record_command(args: argparse.Namespace) -> int:
    from husvakt.record import record  # noqa: PLC0415

    n = await record(
        host=args.broker[0],
        port=args.broker[1],
        topic=args.topic,
        out=args.out,
        count=args.count,
        stop=stop_on_signals(),
    )
    sys.stderr.write(f"recorded {n} readings to {args.out}\n")
    return EXIT_OK
