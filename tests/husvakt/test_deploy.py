"""Running it for months: the systemd units verify, and a service tells systemd it is ready,
keeps the watchdog fed from its event loop, and says when it stops (`sd_notify`)."""

from __future__ import annotations

import asyncio
import configparser
import os
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from husvakt.broker import free_port
from tests.conftest import require_binary
from tests.services import NotifySocket

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
    systemd = NotifySocket(tmp_path)
    proc = subprocess.Popen(
        [shutil.which("husvakt") or str(VENV_BIN / "husvakt"), "gateway", "--config", str(config)],
        env={**os.environ, **systemd.env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        await systemd.pings(3, after=await systemd.hear("READY=1"))  # fed every 150 ms
        proc.send_signal(signal.SIGTERM)
        await systemd.hear("STOPPING=1")
        _, err = await asyncio.to_thread(proc.communicate, timeout=60)
        assert proc.returncode == 0, err.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
        systemd.close()
    assert systemd.heard.index("READY=1") < systemd.heard.index("STOPPING=1")
    assert "STATUS=running" in systemd.heard


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


PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "husvakt.json"


def test_the_alert_rules_check_and_fire_when_they_should():
    promtool = require_binary("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(PROMETHEUS / "rules.yml")],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert checked.returncode == 0 and "SUCCESS: 9 rules found" in checked.stdout, checked.stderr
    tested = subprocess.run([promtool, "test", "rules", "rules.test.yml"], cwd=PROMETHEUS,
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


async def exported_names(tmp_path) -> set[str]:
    """Every metric a real all-in-one process exports, with the gateway's uplink."""
    import re

    from prometheus_client import generate_latest

    from casebridge.store.sql import MemoryCaseStore
    from gateway.clock import SystemClock
    from gateway.outbox import SqliteOutbox
    from gateway.uplink import MqttUplink
    from husvakt.allinone import AllInOne
    from husvakt.config import load_config
    from husvakt.metrics import Metrics, watch_cases
    from tests.factories import make_alarm, make_reading

    school = load_config(ROOT / "config" / "scenarios" / "school.yaml")
    stream = school.stream.model_copy(  # its files in the test's own directory
        update={"state": tmp_path / "rules.db", "quarantine": tmp_path / "q.db"}
    )
    gateway = school.gateway.model_copy(update={"quarantine": tmp_path / "gq.db"})
    config = school.model_copy(update={"stream": stream, "gateway": gateway})
    store, outbox = MemoryCaseStore(), SqliteOutbox.of(config.gateway.outbox.model_copy(
        update={"path": tmp_path / "outbox.db"}))  # fmt: skip
    await store.start()
    await outbox.open()
    try:
        runtime = AllInOne(config=config, clock=SystemClock(), store=store, outbox=outbox)
        uplink = MqttUplink(config=config.gateway.uplink or config.stream.broker.model_copy(),
                            site="nordskolan", gateway="pi-basement", clock=SystemClock())  # fmt: skip
        metrics = Metrics()
        metrics.gateway(runtime.gateway, outbox, uplink)
        uplink.last_ack = 1.0
        metrics.engine(runtime.engine)
        watch_cases(metrics, runtime.bridge, runtime.desk.notifier)
        await runtime.bridge.handle_many([make_alarm(site="nordskolan", sensor="basement-t1")])
        fire = make_reading(0, 80.0, site="nordskolan", gateway="pi-basement", sensor="boiler-t1",
                            seq=1, start=datetime.now(UTC))  # fmt: skip
        await runtime.engine.process_batch([fire], outbox="ob")
        metrics.uplink_latency.observe(0.1)
        runtime.desk.notifier.counts[("email", "failed")] += 1
        runtime.gateway.quarantine.add("unknown-sensor", "x", source="t")
        text = generate_latest(metrics.registry).decode()
    finally:
        await outbox.close()
        await store.aclose()
    return set(re.findall(r"^(husvakt_[a-z_]+)", text, re.M))


async def test_the_dashboard_and_the_alerts_read_only_metrics_husvakt_exports(tmp_path):
    import json
    import re

    names = await exported_names(tmp_path)
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += re.findall(r"expr: (.+)", (PROMETHEUS / "rules.yml").read_text(encoding="utf-8"))
    used = {m for e in exprs for m in re.findall(r"husvakt_[a-z_]+", e)}
    assert used and used <= names, sorted(used - names)
    assert len(dashboard["panels"]) >= 12 and dashboard["uid"] == "husvakt"
