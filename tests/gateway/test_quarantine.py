"""The dead-letter quarantine: aggregated, bounded, on disk for `husvakt quarantine`."""

from __future__ import annotations

from gateway.quarantine import SAMPLE_BYTES, Quarantine, SqliteQuarantine
from husvakt.cli import main


def test_a_flood_of_garbage_is_one_entry_with_a_count_and_its_first_bytes(tmp_path):
    store = SqliteQuarantine(tmp_path / "q.db")
    quarantine = Quarantine(store=store)
    for i in range(1000):
        quarantine.add("uplink-not-json", f"invalid JSON #{i}", source="t/1", raw=b"{x" * 1000)
    quarantine.add("reading-number", "value is not a number", source="t/1", raw=b'{"v": true}')
    quarantine.flush()
    quarantine.add("uplink-not-json", "invalid JSON again", source="t/1", raw=b"{y")
    quarantine.flush()
    entries = {e.reason: e for e in store.entries()}
    assert entries["uplink-not-json"].count == 1001
    assert entries["uplink-not-json"].sample == b"{y"
    assert entries["reading-number"].count == 1
    assert len(store.entries()) == 2
    assert quarantine.counts == {"uplink-not-json": 1001, "reading-number": 1}


def test_memory_and_disk_are_bounded_however_many_sources_an_attacker_invents(tmp_path):
    store = SqliteQuarantine(tmp_path / "q.db", max_rows=50)
    quarantine = Quarantine(store=store, keep=20)
    for i in range(500):
        quarantine.add("uplink-topic", "not a husvakt topic", source=f"junk/{i}", raw=b"x" * 5000)
        if i % 10 == 0:
            quarantine.flush()
    quarantine.flush()
    assert len(quarantine.entries()) == 20
    assert len(store.entries()) == 50
    assert all(len(e.sample) <= SAMPLE_BYTES for e in store.entries())
    assert quarantine.total == 500


def test_admins_list_show_and_purge_what_was_refused(tmp_path, capsys):
    db = tmp_path / "q.db"
    quarantine = Quarantine(store=SqliteQuarantine(db))
    quarantine.add("clock-ahead", "dated a year ahead", source="nordskolan/pi-1", raw=b"{}")
    quarantine.add("unknown-sensor", "ghost-1", source="nordskolan/pi-1", raw=b"{}")
    quarantine.flush()
    assert main(["quarantine", "list", "--db", str(db)]) == 0
    listing = capsys.readouterr().out
    assert "clock-ahead" in listing and "unknown-sensor" in listing and "nordskolan/pi-1" in listing
    entry = SqliteQuarantine(db).entries(reason="clock-ahead")[0]
    assert main(["quarantine", "show", str(entry.id), "--db", str(db)]) == 0
    assert "dated a year ahead" in capsys.readouterr().out
    assert main(["quarantine", "purge", "--reason", "clock-ahead", "--db", str(db)]) == 0
    assert [e.reason for e in SqliteQuarantine(db).entries()] == ["unknown-sensor"]
    assert main(["quarantine", "show", "999", "--db", str(db)]) == 1


def test_lone_surrogates_and_nul_in_what_is_refused_are_stored_and_shown(tmp_path, capsys):
    db = tmp_path / "q.db"
    quarantine = Quarantine(store=SqliteQuarantine(db))
    quarantine.add("x\ud800", "detail \ud83d\x00 end", source="topic/\udfff\x00", raw="\ud800")
    quarantine.flush()
    (entry,) = SqliteQuarantine(db).entries()
    assert entry.reason == "x\\ud800"
    assert entry.source == "topic/\\udfff\\0" and entry.detail == "detail \\ud83d\\0 end"
    assert main(["quarantine", "list", "--db", str(db)]) == 0
    assert "topic/\\udfff" in capsys.readouterr().out
