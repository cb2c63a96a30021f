"""`husvakt backup` and `husvakt restore`: the case store and the rule state, copied online.

SQLite's online backup API copies a database page by page while husvakt keeps writing to it,
so a backup is a consistent snapshot without stopping anything. Each copy is checked
(`PRAGMA integrity_check`) and listed with its size and SHA-256 in `manifest.json`; `restore`
verifies the manifest before it writes anything, writes each file beside its target and moves
it into place (a restore that fails leaves the old files), and refuses to overwrite unless told
to. A PostgreSQL case store is backed up with its own tools (`pg_dump`); the manifest says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from husvakt import __version__
from husvakt.config import HusvaktConfig

__all__ = ["BackupError", "backup", "restore", "targets"]

MANIFEST = "manifest.json"


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why."""


@dataclass(frozen=True)
class Target:
    name: str  # the file's name in the backup
    path: Path  # where it lives


def targets(config: HusvaktConfig) -> list[Target]:
    """The SQLite files a config keeps its cases and rule state in."""
    found = []
    if config.cases.url is None:
        found.append(Target("cases.db", config.cases.sqlite))
    if config.stream.state is not None:
        found.append(Target("rule-state.db", config.stream.state))
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy(source: Path, target: Path) -> None:
    """`source` into `target` with SQLite's online backup, checked."""
    with (
        contextlib.closing(sqlite3.connect(source, timeout=30)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)
        (verdict,) = dst.execute("PRAGMA integrity_check").fetchone()
        if verdict != "ok":
            raise BackupError(f"{source}: the copy is damaged ({verdict})")
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file


def backup(config: HusvaktConfig, out: Path, *, now: datetime | None = None) -> dict[str, object]:
    """Copy the config's SQLite stores into `out` (created; must be empty) with a manifest."""
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} is not empty; give a new directory for each backup")
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)  # cases hold names, phone numbers and access notes
    files = []
    for target in targets(config):
        if not target.path.exists():
            continue
        copy = out / target.name
        _copy(target.path, copy)
        os.chmod(copy, 0o600)
        files.append(
            {
                "name": target.name,
                "from": str(target.path),
                "bytes": copy.stat().st_size,
                "sha256": _sha256(copy),
            }
        )
    manifest: dict[str, object] = {
        "husvakt": __version__,
        "taken_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
        "files": files,
    }
    if config.cases.url is not None:
        manifest["postgresql"] = (
            "the case store is in PostgreSQL: back it up with pg_dump --format=custom "
            "(and restore with pg_restore); this backup holds the rule state only"
        )
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _open_by(paths: list[Path]) -> list[str]:
    """Who has any of `paths` (or their WAL and shared-memory files) open, as `fuser` finds
    them: every process's open files in /proc that this user may read (all of them, as
    root). Each as "pid N (command) has PATH open"."""
    wanted = {}
    for path in paths:
        for name in (path.name, path.name + "-wal", path.name + "-shm"):
            with contextlib.suppress(OSError):
                wanted[str(path.with_name(name).resolve(strict=True))] = path
    found: list[str] = []
    try:
        processes = [e.name for e in os.scandir("/proc") if e.name.isdigit()] if wanted else []
    except OSError:  # no /proc: nothing to see
        processes = []
    for pid in processes:
        try:
            links = {os.readlink(e.path) for e in os.scandir(f"/proc/{pid}/fd")}
            held = sorted(links & wanted.keys())
            if not held or int(pid) == os.getpid():
                continue
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:  # gone, or another user's
            continue
        text = command.decode(errors="replace").strip()[:80]
        shown = "".join(c if c.isprintable() else "?" for c in text)  # no escapes
        found.append(f"pid {pid} ({shown}) has {wanted[held[0]]} open")
    return found
    with contextlib.suppress(OSError):
        processes = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
        for pid in processes:
            if int(pid) == os.getpid():
                continue
            try:
                links = {os.readlink(e.path) for e in os.scandir(f"/proc/{pid}/fd")}
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:  # gone, or another user's
                continue
            for link in sorted(links & wanted.keys()):
                text = command.decode(errors="replace").strip()[:80]
                shown = "".join(c if c.isprintable() else "?" for c in text)  # no escapes
                found.append(f"pid {pid} ({shown}) has {wanted[link]} open")
                break
    return found


def restore(config: HusvaktConfig, source: Path, *, force: bool = False) -> list[Path]:
    """Put a backup's files back where the config keeps them. Refused while any process this
    user may see has one of them open: husvakt would go on writing to the file it opened, and
    what it wrote after the restore would be lost."""
    try:
        manifest = json.loads((source / MANIFEST).read_text(encoding="utf-8"))
        listed = {f["name"]: f for f in manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{source} holds no husvakt backup ({exc})") from exc
    plan = []
    for target in targets(config):
        entry = listed.get(target.name)
        if entry is None:
            continue
        copy = source / target.name
        if not copy.exists() or _sha256(copy) != entry.get("sha256"):
            raise BackupError(f"{copy} does not match the backup's manifest: nothing restored")
        if target.path.exists() and not force:
            raise BackupError(
                f"{target.path} exists; stop husvakt and restore with --force to replace it"
            )
        plan.append((copy, target.path))
    if not plan:
        raise BackupError(f"{source} holds nothing this config keeps")
    busy = _open_by([path for _, path in plan])
    if busy:
        raise BackupError(
            "; ".join(busy) + ": stop husvakt first (systemctl stop husvakt-stream "
            "husvakt-cases): nothing restored"
        )
    restored = []
    for copy, path in plan:
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = path.with_name(path.name + ".restoring")
        fresh.unlink(missing_ok=True)
        _copy(copy, fresh)
        os.chmod(fresh, 0o600)
        if path.exists():  # fold the old file's journal in, so none is left to apply
            with contextlib.closing(sqlite3.connect(path)) as old:
                old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        fresh.replace(path)
        for stale in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)  # the old file's journal is not the new one's
        restored.append(path)
    return restored
