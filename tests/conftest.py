"""Shared fixtures: real services on free loopback ports, started and stopped by PID."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from husvakt.broker import free_port


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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            pytest.fail(f"service exited with {proc.returncode} before listening:\n{out}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)  # polling a port another process opens: no event to wait on
    pytest.fail(f"nothing listening on {host}:{port} after {timeout}s")


@dataclass
class Mosquitto:
    """A mosquitto broker of the test's own; `stop()`/`start()` simulate an outage."""

    binary: str
    conf: Path
    host: str
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        wait_for_port(self.host, self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    binary = require_binary("mosquitto")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "max_queued_messages 100000\n"
        "log_type error\n",
        encoding="utf-8",
    )
    broker = Mosquitto(binary=binary, conf=conf, host="127.0.0.1", port=port)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def postgres_bindir() -> Path:
    """The PostgreSQL server binaries (Debian's postgresql package); missing ones fail."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.fail(
            "PostgreSQL server binaries not found; run scripts/test, which installs postgresql"
        )
    return found[-1].parent


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server of the test session's own on a free loopback port; yields its base
    URL. Runs as the `postgres` user when the tests run as root (initdb refuses root)."""
    import pwd
    import tempfile

    bindir = postgres_bindir()
    as_user: dict[str, int] = {}
    datadir = Path(tempfile.mkdtemp(prefix="husvakt-pg-"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        as_user = {"user": pw.pw_uid, "group": pw.pw_gid}
        os.chown(datadir, pw.pw_uid, pw.pw_gid)
    subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(datadir / "data"),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        **as_user,  # type: ignore[call-overload]
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            str(bindir / "postgres"),
            "-D",
            str(datadir / "data"),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={datadir}",
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
        **as_user,  # type: ignore[call-overload]
    )
    try:
        wait_for_port("127.0.0.1", port, proc=proc, timeout=30)
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(datadir, ignore_errors=True)


def _in_fresh_loop(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even while a test's loop is running."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A throwaway database on the session's server, dropped after the test."""
    import uuid

    import asyncpg

    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = postgres_server.replace("postgresql+asyncpg", "postgresql") + "/postgres"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    _in_fresh_loop(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{postgres_server}/{name}"
    finally:
        _in_fresh_loop(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
