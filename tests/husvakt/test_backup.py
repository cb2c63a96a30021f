"""`husvakt backup` while husvakt writes, and `husvakt restore` into a fresh place: the same
cases and rule state come back; a tampered or foreign backup restores nothing."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from casebridge.store.sql import SqliteCaseStore
from husvakt.broker import free_port
from husvakt.config import load_config
from husvakt.replay import replay_path
from tests.services import stop_process, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
SCHOOL = ROOT / "config" / "scenarios" / "school.yaml"


def site(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    text = SCHOOL.read_text(encoding="utf-8")
    text += "\ncases:\n  sqlite: cases.db\nstream:\n  state: rule-state.db\n"
    path = directory / "husvakt.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def husvakt(*args):
    return subprocess.run([sys.executable, "-m", "husvakt.cli", *args],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


async def test_a_backup_taken_while_husvakt_writes_restores_the_same_cases(tmp_path):
    here = site(tmp_path / "live")
    config = load_config(here)
    store = SqliteCaseStore(config.cases.sqlite)
    await store.start()
    await replay_path(ROOT / "config" / "scenarios" / "boiler-fire.yaml", config, store=store)
    cases = [(c.id, c.condition, c.status) for c in await store.list_cases()]
    with closing(sqlite3.connect(config.stream.state)) as state, state:  # in WAL as husvakt's
        state.execute("PRAGMA journal_mode=WAL")
        state.execute("CREATE TABLE IF NOT EXISTS marker (v TEXT)")
        state.execute("INSERT INTO marker VALUES ('held')")
    try:
        # online: the store stays open (its engine holds connections) while the copy is taken
        out = husvakt("backup", "--config", str(here), "--out", str(tmp_path / "bk"))
        assert out.returncode == 0, out.stderr
        assert "cases.db:" in out.stdout and "rule-state.db:" in out.stdout
        again = husvakt("backup", "--config", str(here), "--out", str(tmp_path / "bk"))
        assert again.returncode == 1 and "is not empty" in again.stderr
    finally:
        await store.aclose()
    assert oct((tmp_path / "bk" / "cases.db").stat().st_mode & 0o777) == "0o600"

    elsewhere = site(tmp_path / "restored")
    back = husvakt("restore", "--config", str(elsewhere), "--from", str(tmp_path / "bk"))
    assert back.returncode == 0, back.stderr
    restored = load_config(elsewhere)
    again_store = SqliteCaseStore(restored.cases.sqlite)
    await again_store.start()
    try:
        assert [(c.id, c.condition, c.status) for c in await again_store.list_cases()] == cases
    finally:
        await again_store.aclose()
    with closing(sqlite3.connect(restored.stream.state)) as state:
        assert state.execute("SELECT v FROM marker").fetchall() == [("held",)]
    # it replaces existing files only when told to
    refused = husvakt("restore", "--config", str(elsewhere), "--from", str(tmp_path / "bk"))
    assert refused.returncode == 1 and "restore with --force" in refused.stderr
    # not while husvakt runs on the files: it would go on writing to the ones it opened
    port = free_port()
    serving = subprocess.Popen(
        [sys.executable, "-m", "husvakt.cli", "cases", "serve", "--config", str(elsewhere),
         "--port", str(port), "--metrics", f"127.0.0.1:{free_port()}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, proc=serving, timeout=60)
        busy = husvakt("restore", "--config", str(elsewhere), "--from", str(tmp_path / "bk"),
                       "--force")  # fmt: skip
    finally:
        stop_process(serving)
    assert busy.returncode == 1, busy.stderr
    assert f"pid {serving.pid} (" in busy.stderr and "cases.db open" in busy.stderr, busy.stderr
    assert "stop husvakt first" in busy.stderr and "nothing restored" in busy.stderr
    forced = husvakt("restore", "--config", str(elsewhere), "--from", str(tmp_path / "bk"),
                     "--force")  # fmt: skip
    assert forced.returncode == 0, forced.stderr


def test_a_tampered_backup_restores_nothing(tmp_path):
    here = site(tmp_path / "live")
    with closing(sqlite3.connect(tmp_path / "live" / "cases.db")) as db, db:
        db.execute("CREATE TABLE t (v)")
    assert husvakt("backup", "--config", str(here), "--out", str(tmp_path / "bk")).returncode == 0
    with closing(sqlite3.connect(tmp_path / "bk" / "cases.db")) as db, db:
        db.execute("INSERT INTO t VALUES ('forged')")
    elsewhere = site(tmp_path / "restored")
    out = husvakt("restore", "--config", str(elsewhere), "--from", str(tmp_path / "bk"))
    assert out.returncode == 1 and "does not match the backup's manifest" in out.stderr
    assert not (tmp_path / "restored" / "cases.db").exists()
    nothing = husvakt("restore", "--config", str(elsewhere), "--from", str(tmp_path))
    assert nothing.returncode == 1 and "holds no husvakt backup" in nothing.stderr


def test_a_process_named_with_terminal_escapes_is_shown_without_them(tmp_path):
    here = site(tmp_path / "live")
    with closing(sqlite3.connect(tmp_path / "live" / "cases.db")) as db, db:
        db.execute("CREATE TABLE t (v)")
    assert husvakt("backup", "--config", str(here), "--out", str(tmp_path / "bk")).returncode == 0
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time; sqlite3.connect(sys.argv[1]).execute('SELECT 1');"
         " print('open', flush=True); time.sleep(120)",
         str(tmp_path / "live" / "cases.db"), "\x1b]0;pwned\x07\x1b[2J\u202e"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == b"open\n"
        out = husvakt("restore", "--config", str(here), "--from", str(tmp_path / "bk"), "--force")
    finally:
        holder.kill()
        holder.wait()
    assert out.returncode == 1 and f"pid {holder.pid} (" in out.stderr, out.stderr
    assert "\x1b" not in out.stderr and "\x07" not in out.stderr and "\u202e" not in out.stderr
