"""Shared fixtures: real services on free loopback ports, started and stopped by PID."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import services
from tests.services import Mosquitto, PostgresServer, ServiceError


def require_binary(name: str) -> str:
    """The path of `name`; a missing binary fails the test (never skips), in CI and locally —
    `scripts/test` installs what the suite needs."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        pytest.fail(f"{name} is not installed; run scripts/test, which installs it with apt-get")
    return path


def wait_for_port(
    host: str, port: int, *, proc: subprocess.Popen[bytes], timeout: float = 10.0
) -> None:
    """Wait for a service we started; one that does not come up fails the test."""
    try:
        services.wait_for_port(host, port, proc=proc, timeout=timeout)
    except ServiceError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto broker of the test's own (persistent sessions survive its restarts)."""
    broker = Mosquitto.configured(require_binary("mosquitto"), tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test session's own; a missing binary fails the tests."""
    try:
        server = PostgresServer().start()
    except ServiceError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()


def _in_fresh_loop(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even while a test's loop is running."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A throwaway database on the session's server, dropped after the test."""
    import uuid

    name = f"t_{uuid.uuid4().hex[:12]}"
    url = _in_fresh_loop(postgres_server.create_database(name))
    try:
        yield url
    finally:
        _in_fresh_loop(postgres_server.drop_database(name))


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[services.Tansu]:
    """A Kafka-protocol broker (Tansu) of the test session's own."""
    try:
        broker = services.Tansu().start()
    except ServiceError as exc:
        pytest.fail(str(exc))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def victoria_metrics() -> Iterator[services.VictoriaMetrics]:
    """A VictoriaMetrics server (InfluxDB v2 write API) of the test's own."""
    server = services.VictoriaMetrics(require_binary("victoria-metrics"))
    try:
        server.start()
    except ServiceError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()
