"""Reading secrets and TLS material at the edge: from files, never from the config text,
never logged."""

from __future__ import annotations

import ssl
from pathlib import Path

from gateway.config import TlsConfig

__all__ = ["read_secret", "tls_context"]


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
