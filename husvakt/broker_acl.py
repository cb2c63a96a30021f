"""Gateway identity on the broker (`husvakt broker acl`): a mosquitto ACL and password file.

Anyone who can publish to the broker can claim to be any gateway; the stream's registry check
refuses what the config does not know, but cannot tell a gateway from an impostor that names it.
The broker can: each gateway gets its own broker user, which may write only under its own
`husvakt/v1/{site}/{gateway}/#` (readings, status, its last will) and read only its own MQTT
sensors' topics; the stream's user may read every gateway's topics; anonymous clients may not
connect at all. A gateway is identified by its password, or, with `tls=True`, by its TLS
client certificate (the certificate's CN is its user: mosquitto's `use_identity_as_username`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config import MANUAL_GATEWAY, MqttPoint
from gateway.wire import TOPIC_ROOT, gateway_topics
from husvakt.config import HusvaktConfig

__all__ = [
    "STREAM_USER",
    "BrokerUser",
    "TlsListener",
    "acl_text",
    "broker_users",
    "mosquitto_hash",
    "write_broker_files",
]

#: The stream's broker user when its config names none.
STREAM_USER = "husvakt-stream"
#: mosquitto 2's password hash: PBKDF2-SHA512, 101 rounds, a 12-byte salt (`$7$`).
PBKDF2_ROUNDS = 101


@dataclass(frozen=True)
class BrokerUser:
    """A broker user and what it may write and read."""

    name: str
    what: str  # for the ACL's comment: "gateway nordskolan/pi-basement"
    write: tuple[str, ...] = ()
    read: tuple[str, ...] = ()


@dataclass(frozen=True)
class TlsListener:
    """The broker's TLS listener on which clients are known by their certificate's CN."""

    port: int
    cafile: Path
    certfile: Path
    keyfile: Path
    bind: str | None = None


@dataclass
class _Gateway:
    site: str
    gateway: str
    user: str
    sources: set[str] = field(default_factory=set)


def gateway_user(site: str, gateway: str) -> str:
    """The broker user of a gateway whose config names none."""
    return f"husvakt-{site}-{gateway}"


def broker_users(configs: Sequence[HusvaktConfig], *, tls: bool = False) -> list[BrokerUser]:
    """Every gateway the configs name (their own gateway, and those their sensors say read
    them), then the stream. With `tls`, a gateway's user is its id (its certificate's CN), so
    gateway ids must be unique across sites."""
    gateways: dict[tuple[str, str], _Gateway] = {}
    stream_users: set[str] = set()
    for config in configs:
        gw = config.gateway
        if gw is not None:
            uplink = gw.uplink
            named = uplink.username if uplink is not None else None
            user = gw.id if tls else named or gateway_user(gw.site, gw.id)
            entry = gateways.setdefault((gw.site, gw.id), _Gateway(gw.site, gw.id, user))
            for sensor in config.sensors:
                source = sensor.source
                if not isinstance(source, MqttPoint) or uplink is None:
                    continue
                broker = gw.mqtt_brokers.get(source.broker or next(iter(gw.mqtt_brokers), ""))
                if broker is not None and (broker.host, broker.port) == (uplink.host, uplink.port):
                    entry.sources.add(source.topic)  # its sensors publish on this same broker
        for (site, _), sensor in config.sensor_index().items():
            if sensor.gateway in (None, MANUAL_GATEWAY) or (site, sensor.gateway) in gateways:
                continue  # readings by hand come from the case store: no broker account
            user = sensor.gateway if tls else gateway_user(site, sensor.gateway)
            gateways[(site, sensor.gateway)] = _Gateway(site, sensor.gateway, user)
        stream_users.add(config.stream.broker.username or STREAM_USER)
    if tls:
        seen: dict[str, str] = {}
        for (site, gateway), _ in sorted(gateways.items()):
            if gateway in seen:
                raise ValueError(
                    f"gateway id {gateway!r} is used at {seen[gateway]} and {site}: with TLS "
                    "client certificates (CN = gateway id) each gateway id must be unique"
                )
            seen[gateway] = site
    users = [
        BrokerUser(
            name=g.user,
            what=f"gateway {site}/{gateway}",
            write=(gateway_topics(site, gateway),),
            read=tuple(sorted(g.sources)),
        )
        for (site, gateway), g in sorted(gateways.items())
    ]
    users += [
        BrokerUser(name=name, what="the stream", read=(f"{TOPIC_ROOT}/#",))
        for name in sorted(stream_users)
    ]
    names = [u.name for u in users]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"one broker user for two roles: {', '.join(dup)}")
    return users


def acl_text(users: Iterable[BrokerUser], *, source: str) -> str:
    """A mosquitto `acl_file`: nothing is allowed that a line here does not allow."""
    lines = [
        f"# husvakt broker ACL, written by `husvakt broker acl` from {source}.",
        "# Each gateway writes only under its own topics; the stream reads them all.",
        "",
    ]
    for user in users:
        lines += [f"# {user.what}", f"user {user.name}"]
        lines += [f"topic write {t}" for t in user.write]
        lines += [f"topic read {t}" for t in user.read]
        lines.append("")
    return "\n".join(lines)


def mosquitto_hash(password: str, *, salt: bytes | None = None) -> str:
    """A password as mosquitto 2's password file keeps it (what `mosquitto_passwd` writes)."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ROUNDS)
    b64 = base64.b64encode
    return f"$7${PBKDF2_ROUNDS}${b64(salt).decode()}${b64(digest).decode()}"


def _private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only (created 0600, never widened)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    path.chmod(0o600)


def write_broker_files(
    users: Sequence[BrokerUser], out: Path, *, source: str, tls: TlsListener | None = None
) -> list[Path]:
    """Write `husvakt.acl`, a `mosquitto-husvakt.conf` to include from mosquitto.conf (with
    queues that drop nothing while a persistent session is away), and
    (without `tls`) `husvakt.passwd` with a password per user, kept in `secrets/USER` — an
    existing secret is kept, so running this again adds users without changing anyone's
    password. With `tls`, the conf holds the TLS listener where a client certificate is required
    and its CN is the user (and no passwords are written). Returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    acl = out / "husvakt.acl"
    acl.write_text(acl_text(users, source=source), encoding="utf-8")
    conf_lines = [
        "# husvakt: gateway identity (include this from mosquitto.conf)",
        "per_listener_settings false",
        "allow_anonymous false",
        f"acl_file {acl.resolve()}",
        "# nothing dropped while husvakt stream or a gateway is away: by default mosquitto",
        "# queues 1,000 messages for a persistent session and drops the rest without a word",
        "max_queued_messages 1000000",
        "max_inflight_messages 1000",
    ]
    written = [acl]
    if tls is not None:
        conf_lines += [
            "# the TLS listener: a client certificate is required, and its CN is the user",
            f"listener {tls.port}" + (f" {tls.bind}" if tls.bind else ""),
            f"cafile {tls.cafile.resolve()}",
            f"certfile {tls.certfile.resolve()}",
            f"keyfile {tls.keyfile.resolve()}",
            "require_certificate true",
            "use_identity_as_username true",
        ]
    else:
        vault = out / "secrets"
        vault.mkdir(mode=0o700, exist_ok=True)
        entries = []
        for user in users:
            secret = vault / user.name
            if not secret.exists():
                _private(secret, secrets.token_urlsafe(24) + "\n")
                written.append(secret)
            password = secret.read_text(encoding="utf-8").strip()
            entries.append(f"{user.name}:{mosquitto_hash(password)}")
        passwd = out / "husvakt.passwd"
        _private(passwd, "\n".join(entries) + "\n")
        written.append(passwd)
        conf_lines.append(f"password_file {passwd.resolve()}")
    conf = out / "mosquitto-husvakt.conf"
    conf.write_text("\n".join(conf_lines) + "\n", encoding="utf-8")
    written.append(conf)
    return written
