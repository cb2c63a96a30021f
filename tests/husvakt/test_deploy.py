"""Running it for months: the systemd units verify, and a service tells systemd it is ready,
keeps the watchdog fed from its event loop, and says when it stops (`sd_notify`)."""

from __future__ import annotations

import asyncio
import configparser
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from husvakt.broker import free_port
from tests.conftest import require_binary

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
VENV_BIN = Path(sys.executable).parent

HARDENING = {
    "NoNewPrivileges": "true",
    "ProtectSystem": "strict",
    "ProtectHome": "true",
    "PrivateTmp": "true",
    "StateDirectory": None,
    "Restart": "always",
    "User": "husvakt",
    "CapabilityBoundingSet": "",
}


def unit(path):
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # keys as written
    parser.read(path, encoding="utf-8")
    return parser


@pytest.mark.parametrize("name", sorted(p.name for p in UNITS.glob("*.service")))
def test_every_unit_is_hardened_and_systemd_analyze_verifies_it(name, tmp_path):
    service = unit(UNITS / name)["Service"]
    for key, value in HARDENING.items():
        assert key in service, f"{name} has no {key}"
        if value is not None:
            assert service[key] == value, (name, key)
    assert service["ExecStart"].startswith("/opt/husvakt/bin/")
    if name != "husvakt-faust@.service":  # faust's own worker speaks no sd_notify
        assert (service["Type"], service["NotifyAccess"]) == ("notify", "main")
        assert "WatchdogSec" in service
    if name == "husvakt-gateway.service":
        assert service["SupplementaryGroups"] == "dialout"  # the serial adapters
    # verified as installed: the binary where this test's virtualenv has it
    text = (UNITS / name).read_text(encoding="utf-8").replace("/opt/husvakt/bin/", f"{VENV_BIN}/")
    installed = tmp_path / name.replace("@.service", "@1.service")
    installed.write_text(text, encoding="utf-8")
    analyze = require_binary("systemd-analyze")
    out = subprocess.run([analyze, "verify", "--man=no", str(installed)],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr


async def test_the_gateway_tells_systemd_it_is_ready_feeds_the_watchdog_and_says_it_stops(
    tmp_path,
):
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "sites: [{id: skolan, name: Skolan}]\n"
        "gateway:\n  id: pi-1\n  site: skolan\n"
        f"  mqtt_brokers: {{lan: {{host: 127.0.0.1, port: {free_port()}}}}}\n"
        f"  uplink: {{host: 127.0.0.1, port: {free_port()}}}\n"
        "  outbox: {path: outbox.db}\n"
        "sensors:\n  - {id: t1, source: {type: mqtt, topic: skolan/t1}}\n",
        encoding="utf-8",
    )
    where = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(where))
    sock.setblocking(False)
    env = {**os.environ, "NOTIFY_SOCKET": str(where), "WATCHDOG_USEC": "300000"}
    proc = subprocess.Popen(
        [shutil.which("husvakt") or str(VENV_BIN / "husvakt"), "gateway", "--config", str(config)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    heard: list[str] = []

    async def hear(what):
        while what not in heard:
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 30)
            heard.extend(data.decode().split("\n"))

    try:
        await hear("READY=1")
        ready_at = len(heard)
        while heard[ready_at:].count("WATCHDOG=1") < 3:  # fed every 150 ms
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 30)
            heard.extend(data.decode().split("\n"))
        proc.send_signal(signal.SIGTERM)
        await hear("STOPPING=1")
        _, err = await asyncio.to_thread(proc.communicate, timeout=60)
        assert proc.returncode == 0, err.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    assert heard.index("READY=1") < heard.index("STOPPING=1")
    assert "STATUS=running" in heard


def test_without_systemd_nothing_is_sent(monkeypatch):
    from husvakt.systemd import notify, watchdog_every

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert notify("READY=1") is False and watchdog_every() is None
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # another process's watchdog
    assert watchdog_every() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_every() == 5.0
