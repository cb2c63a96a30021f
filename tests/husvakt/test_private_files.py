"""The files that hold readings, refused input, rule state, password hashes and tokens are the
owner's alone (0600), whatever the umask — and a file found wider is narrowed."""

import os
import stat

from casebridge.store.sql import SqliteCaseStore
from gateway.outbox import SqliteOutbox
from gateway.quarantine import SqliteQuarantine
from stream.state import SqliteRuleState


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


async def test_every_database_is_created_for_its_owner_only(tmp_path):
    old = os.umask(0o002)  # a permissive umask: group and others could read new files
    try:
        outbox = SqliteOutbox(tmp_path / "gw" / "outbox.db")
        await outbox.open()
        quarantine = SqliteQuarantine(tmp_path / "q" / "quarantine.db")
        state = SqliteRuleState(tmp_path / "s" / "rules.db")
        store = SqliteCaseStore(tmp_path / "c" / "cases.db")
        await store.start()
        files = [outbox.path, quarantine.path, state.path, store.path]
        await store.aclose()
        state.close()
        quarantine.close()
        await outbox.close()
    finally:
        os.umask(old)
    for path in files:
        assert mode(path) == 0o600, path
        for companion in path.parent.glob(path.name + "-*"):  # -wal, -shm
            assert not mode(companion) & 0o077, companion


async def test_a_database_found_readable_by_others_is_narrowed(tmp_path):
    db = tmp_path / "cases.db"
    db.touch()
    db.chmod(0o644)
    store = SqliteCaseStore(db)
    await store.start()
    await store.aclose()
    assert mode(db) == 0o600
