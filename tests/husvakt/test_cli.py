import json
import subprocess
import sys
from pathlib import Path

import pytest

from casebridge.models import OpenPlan
from casebridge.store.sql import SqliteCaseStore
from husvakt.cli import main
from tests.factories import T0, make_alarm, make_draft

DEMO = Path(__file__).resolve().parents[2] / "husvakt" / "data" / "demo.yaml"


def husvakt(*args):
    return subprocess.run(
        [sys.executable, "-m", "husvakt.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["demo"],
        ["run"],
        ["cases"],
        ["cases", "list"],
        ["cases", "show"],
        ["config"],
        ["config", "check"],
    ],
)
def test_every_command_explains_itself(command):
    out = husvakt(*command, "--help")
    assert out.returncode == 0
    assert "usage: husvakt" in out.stdout and len(out.stdout.splitlines()) > 3


def test_config_check_prints_a_summary_for_a_good_file():
    out = husvakt("config", "check", str(DEMO))
    assert out.returncode == 0
    assert "OK" in out.stdout and "sensors: 3" in out.stdout


def test_config_check_points_at_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        DEMO.read_text(encoding="utf-8").replace("poll_interval: 60s", "poll_interval: soon"),
        encoding="utf-8",
    )
    out = husvakt("config", "check", str(bad))
    assert out.returncode == 1
    line = next(
        n for n, text in enumerate(bad.read_text().splitlines(), 1) if "poll_interval: soon" in text
    )
    assert f"{bad}:{line}:" in out.stderr
    assert "gateway.modbus_devices.boiler-plc.poll_interval: 'soon' is not a duration" in out.stderr


async def test_cases_list_and_show(tmp_path, capsys):
    db = tmp_path / "cases.db"
    store = SqliteCaseStore(db)
    await store.start()
    await store.record_alarm(
        make_alarm(), make_draft(access_notes="Key box K3"), OpenPlan(), now=T0, reopen_window=0
    )
    await store.aclose()

    out = await _run_cli(["cases", "list", "--db", str(db)], capsys)
    assert "HV-2026-000001" in out and "freezing" in out and "fm" in out
    out = await _run_cli(["cases", "list", "--db", str(db), "--json"], capsys)
    assert json.loads(out)[0]["id"] == "HV-2026-000001"
    out = await _run_cli(["cases", "show", "HV-2026-000001", "--db", str(db)], capsys)
    assert "Key box K3" in out and "alarm_raised" in out


async def test_stored_text_cannot_drive_the_terminal_it_is_printed_on(tmp_path, capsys):
    """A comment and an access note carrying escape sequences (clear screen, retitle, a C1
    CSI) are shown, not obeyed — in the table, the case and the JSON."""
    db = tmp_path / "cases.db"
    store = SqliteCaseStore(db)
    await store.start()
    hostile = "door code 4711\x1b[2J\x1b]0;owned\x07\x9b31m"
    await store.record_alarm(
        make_alarm(), make_draft(access_notes=hostile), OpenPlan(), now=T0, reopen_window=0
    )
    await store.act("HV-2026-000001", "comment", actor="eva", now=T0, text=hostile)
    await store.aclose()
    for argv in (["show", "HV-2026-000001"], ["show", "HV-2026-000001", "--json"], ["list"]):
        out = await _run_cli(["cases", *argv, "--db", str(db)], capsys)
        assert not any(ch in out for ch in "\x1b\x07\x9b"), argv
    out = await _run_cli(["cases", "show", "HV-2026-000001", "--db", str(db)], capsys)
    assert "access: door code 4711\\u001b[2J\\u001b]0;owned\\u0007\\u009b31m" in out
    shown = await _run_cli(["cases", "show", "HV-2026-000001", "--json", "--db", str(db)], capsys)
    assert json.loads(shown)["timeline"][-1]["text"] == hostile  # JSON still means the same


async def _run_cli(argv, capsys):
    import asyncio

    code = await asyncio.to_thread(main, argv)
    assert code == 0
    return capsys.readouterr().out


def test_a_missing_case_store_is_a_clear_error(tmp_path):
    out = husvakt("cases", "list", "--db", str(tmp_path / "none.db"))
    assert out.returncode == 1
    assert "no such case store" in out.stderr


def test_run_and_gateway_on_a_config_without_a_gateway_say_so_without_a_traceback(tmp_path):
    config = tmp_path / "server.yaml"
    config.write_text(
        "sites: [{id: s, name: S}]\nteams: [{id: fm, name: FM}]\nrouting: [{id: all, team: fm}]\n"
    )
    for command in ("run", "gateway"):
        out = subprocess.run(
            [sys.executable, "-m", "husvakt.cli", command, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 1, out.stderr
        assert "has no 'gateway' section" in out.stderr
        assert "Traceback" not in out.stderr


@pytest.mark.parametrize("expires", ["0", "-5", "soon", "99999999d", "1e400", "nan"])
def test_a_token_expiry_that_makes_no_sense_is_a_usage_error(tmp_path, expires):
    out = subprocess.run(
        [sys.executable, "-m", "husvakt.cli", "users", "token", "eva", "--expires", expires,
         "--db", str(tmp_path / "cases.db")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr


SCHOOL = Path(__file__).resolve().parents[2] / "config" / "scenarios" / "school.yaml"


def test_rules_and_routing_explain_know_a_sites_own_condition(capsys):
    assert main(["rules", "explain", "cellar-h1", "--config", str(SCHOOL)]) == 0
    rules = capsys.readouterr().out
    assert "nordskolan/cellar-h1 (kind humidity, building main, room cellar):" in rules
    assert "damp: row damp-cellar — above: 75, clear: 70, hold: 21600" in rules
    assert "freezing: no row matches — not watched for this condition" in rules
    explain = ["routing", "explain", "--config", str(SCHOOL), "--site", "nordskolan"]
    assert main([*explain, "--sensor", "cellar-h1", "--condition", "damp"]) == 0
    assert "→ team facilities, priority P3, by row default" in capsys.readouterr().out
    assert main([*explain, "--sensor", "cellar-h1", "--condition", "mould"]) == 1
    error = capsys.readouterr().err
    assert f"no condition 'mould' in {SCHOOL}; choose one of: freezing, fire," in error
    assert error.rstrip().endswith(
        "stream_lag, damp, leak, night_flow, water_spike, meter_stopped, co2_high, door_open"
    )
    # a meter read by hand: no offline row; a counter: fault readings only
    assert main(["rules", "explain", "heat-m1", "--config", str(SCHOOL)]) == 0
    meter = capsys.readouterr().out
    assert "meter_stopped: row heat-stopped — meter: stopped, after: 691200" in meter
    assert "sensor_offline: row sensor-offline — after: 900 (not for this sensor" in meter
    assert "only fault readings count" in meter
