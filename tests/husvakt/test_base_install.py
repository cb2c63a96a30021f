"""`husvakt stream` runs on a base install: optional extras load only when configured."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import pytest

from tests.stream.faust_helpers import SCHOOL

# A base install lacks the `kafka` and `influx` extras: make their imports fail as they would.
BASE = (
    "import sys\n"
    "for name in ('influxdb_client', 'faust', 'aiokafka', 'mode'):\n"
    "    sys.modules[name] = None\n"
    "from husvakt.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.mark.mqtt
@pytest.mark.e2e
async def test_husvakt_stream_starts_without_the_optional_extras(mosquitto, tmp_path):
    text = SCHOOL.read_text(encoding="utf-8")
    text += (
        f"\nstream:\n  broker: {{host: {mosquitto.host}, port: {mosquitto.port}}}\n"
        f"  state: {tmp_path / 'rules.db'}\n  quarantine: {tmp_path / 'q.db'}\n"
        f"\ncases:\n  sqlite: {tmp_path / 'cases.db'}\n"
    )
    config = tmp_path / "site.yaml"
    config.write_text(text, encoding="utf-8")
    log = tmp_path / "stream.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", BASE, "-v", "stream", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        # another process: its log is the only signal it gives
        while "uplink subscription active" not in log.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.2)
        assert proc.poll() is None, log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()
