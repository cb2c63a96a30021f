"""Reading secrets and TLS material at the edge: from files, never from the config text,
never logged."""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

from gateway.config import TlsConfig

__all__ = ["private_file", "read_secret", "tls_context"]

log = logging.getLogger("husvakt.files")


def private_file(path: Path) -> Path:
    """Make sure `path` exists and only its owner may read or write it (0600) — for the
    databases that hold readings, password hashes and tokens, before SQLite opens them (its
    journal and WAL files take the database's mode). A file someone else owns is left as it
    is, with a warning."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except PermissionError as exc:
        log.warning("cannot make %s private (0600): %s", path, exc)
    return path


def read_secret(path: Path | None) -> str | None:
    """The first line of a secret file (a password), or None without one."""
    if path is None:
        return None
    return path.read_text(encoding="utf-8").strip()


def tls_context(tls: TlsConfig | None) -> ssl.SSLContext | None:
    """Verify the broker against `ca_file`; present a client certificate when configured."""
    if tls is None:
        return None
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    if tls.cert_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    return context
