"""`husvakt broker acl` against a real mosquitto: a gateway publishes only as itself, reads only
its own sensors, the stream reads every gateway, and a client without credentials gets nothing."""

from __future__ import annotations

import asyncio
import queue
import ssl
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

from gateway.wire import readings_topic, status_topic
from husvakt.broker import free_port
from husvakt.broker_acl import TlsListener, broker_users, mosquitto_hash, write_broker_files
from husvakt.cli import main
from husvakt.config import HusvaktConfig
from tests.conftest import require_binary
from tests.gateway.test_uplink import make_certificates
from tests.services import Mosquitto

SITE = "nordskolan"
TIMEOUT = 10


def site_config(port: int, gateway: str, sensor: str) -> HusvaktConfig:
    """One gateway whose thermometer publishes on the broker it uplinks to."""
    return HusvaktConfig.model_validate(
        {
            "sites": [{"id": SITE, "name": "Nordskolan"}],
            "gateway": {
                "id": gateway,
                "site": SITE,
                "mqtt_brokers": {"lan": {"host": "127.0.0.1", "port": port}},
                "uplink": {"host": "127.0.0.1", "port": port},
            },
            "sensors": [{"id": sensor, "source": {"type": "mqtt", "topic": f"sensors/{sensor}"}}],
        }
    )


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[tuple[Mosquitto, Path]]:
    """A mosquitto that runs on the files `husvakt broker acl` wrote for gateways pi-a and pi-b."""
    port = free_port()
    configs = [site_config(port, "pi-a", "a1"), site_config(port, "pi-b", "b1")]
    out = tmp_path / "broker"
    write_broker_files(broker_users(configs), out, source="test")
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        (out / "mosquitto-husvakt.conf").read_text()
        + f"listener {port} 127.0.0.1\n"
        + "user root\n",  # as root it would drop to a user that cannot read our 0600 files
        encoding="utf-8",
    )
    broker = Mosquitto(binary=require_binary("mosquitto"), conf=conf, host="127.0.0.1", port=port)
    broker.start()
    try:
        yield broker, out
    finally:
        broker.stop()


class Client:
    """A paho MQTT 5 client whose acknowledgements are read in order, with their reason codes."""

    def __init__(
        self,
        broker: Mosquitto,
        user: str | None,
        password: str | None,
        *,
        tls: tuple[Path, Path | None, Path | None] | None = None,
    ) -> None:
        self.events: queue.Queue[tuple[str, object]] = queue.Queue()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if user is not None:
            self.c.username_pw_set(user, password)
        if tls is not None:
            ca, cert, key = tls
            self.c.tls_set(ca_certs=str(ca), certfile=cert and str(cert), keyfile=key and str(key))
        self.c.on_connect = lambda _c, _u, _f, rc, _p: self.events.put(("connect", rc))
        self.c.on_subscribe = lambda _c, _u, _m, rcs, _p: self.events.put(("subscribe", rcs))
        self.c.on_publish = lambda _c, _u, _m, rc, _p: self.events.put(("publish", rc))
        self.c.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))
        self.c.on_disconnect = lambda _c, _u, _f, rc, _p: self.events.put(("disconnect", rc))
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        kind, self.connected = self.events.get(timeout=TIMEOUT)
        if kind != "connect":
            self.close()
            raise ConnectionRefusedError(f"the broker hung up: {self.connected}")

    def subscribe(self, topic: str) -> object:
        self.c.subscribe(topic, qos=1)
        kind, (code,) = self.events.get(timeout=TIMEOUT)  # type: ignore[misc]
        assert kind == "subscribe"
        return code

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> object:
        props = Properties(mqtt.PacketTypes.PUBLISH)
        self.c.publish(topic, payload, qos=1, retain=retain, properties=props)
        kind, code = self.events.get(timeout=TIMEOUT)
        assert kind == "publish"
        return code

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def secret(out: Path, user: str) -> str:
    return (out / "secrets" / user).read_text().strip()


@pytest.fixture
def clients(locked: tuple[Mosquitto, Path]) -> Iterator[dict[str, Client]]:
    broker, out = locked
    made = {
        name: Client(broker, user, secret(out, user))
        for name, user in (
            ("a", "husvakt-nordskolan-pi-a"),
            ("b", "husvakt-nordskolan-pi-b"),
            ("stream", "husvakt-stream"),
        )
    }
    yield made
    for c in made.values():
        c.close()


def test_a_gateway_publishes_as_itself_only_and_the_stream_reads_every_gateway(clients):
    a, b, stream = clients["a"], clients["b"], clients["stream"]
    assert not stream.subscribe("husvakt/v1/#").is_failure
    assert not a.publish(readings_topic(SITE, "pi-a"), b"genuine a").is_failure
    assert stream.messages.get(timeout=TIMEOUT) == (readings_topic(SITE, "pi-a"), b"genuine a")
    # gateway A's credentials forging gateway B's readings, status and last will topic
    for forged in (readings_topic(SITE, "pi-b"), status_topic(SITE, "pi-b"), "husvakt/v1/x/y/z"):
        assert a.publish(forged, b"forged").is_failure
    assert not b.publish(readings_topic(SITE, "pi-b"), b"genuine b").is_failure
    assert not a.publish(readings_topic(SITE, "pi-a"), b"after").is_failure
    got = [stream.messages.get(timeout=TIMEOUT) for _ in range(2)]
    assert sorted(got) == [
        (readings_topic(SITE, "pi-a"), b"after"),
        (readings_topic(SITE, "pi-b"), b"genuine b"),
    ]  # and the forged ones, published before these by the same client, never arrived
    assert stream.messages.empty()


def test_a_gateway_reads_its_own_sensors_and_nothing_else(clients):
    """mosquitto grants any subscription and filters what it delivers; a retained message is
    delivered right after the subscription that matches it, before the next SUBACK — so what
    has not arrived by the second SUBACK was refused."""
    a, b, stream = clients["a"], clients["b"], clients["stream"]
    assert not b.publish(status_topic(SITE, "pi-b"), b"online", retain=True).is_failure
    for c in (stream, a):
        c.subscribe("husvakt/v1/#")
        c.subscribe("sensors/a1")
    assert stream.messages.get_nowait() == (status_topic(SITE, "pi-b"), b"online")
    assert a.messages.empty()  # gateway B's status is not gateway A's to read
    assert b.publish("sensors/a1", b"21.5").is_failure  # nor A's sensor B's to write


def test_a_client_without_credentials_or_with_wrong_ones_cannot_connect(locked):
    broker, _ = locked
    for user, password in ((None, None), ("husvakt-nordskolan-pi-a", "guess")):
        c = Client(broker, user, password)
        assert c.connected.is_failure
        c.close()


def test_running_it_again_keeps_the_passwords_and_the_files_are_private(tmp_path):
    config = site_config(1883, "pi-a", "a1")
    out = tmp_path / "broker"
    write_broker_files(broker_users([config]), out, source="x")
    first = secret(out, "husvakt-nordskolan-pi-a")
    write_broker_files(broker_users([config, site_config(1883, "pi-b", "b1")]), out, source="x")
    assert secret(out, "husvakt-nordskolan-pi-a") == first
    for path in (out / "husvakt.passwd", *(out / "secrets").iterdir()):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert "husvakt-nordskolan-pi-b:$7$101$" in (out / "husvakt.passwd").read_text()


def test_the_password_hash_is_mosquittos_own(tmp_path):
    """The same hash `mosquitto_passwd` writes (PBKDF2-SHA512, 101 rounds, 12-byte salt)."""
    import base64
    import subprocess

    tool = require_binary("mosquitto_passwd")
    file = tmp_path / "pw"
    subprocess.run([tool, "-c", "-b", str(file), "eva", "hemligt"], check=True)
    theirs = file.read_text().strip().split(":", 1)[1]
    salt = base64.b64decode(theirs.split("$")[3])
    assert mosquitto_hash("hemligt", salt=salt) == theirs


def client_certificate(certs: Path, name: str) -> tuple[Path, Path]:
    """A client certificate with CN = `name`, signed by the test CA in `certs`."""
    openssl = require_binary("openssl")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=certs)

    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
        "-keyout", f"{name}.key", "-out", f"{name}.csr")  # fmt: skip
    run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.crt")  # fmt: skip
    return certs / f"{name}.crt", certs / f"{name}.key"


def test_with_certificates_each_gateway_is_its_certificate(tmp_path):
    """Against a real mosquitto on the TLS listener the files describe: gateway pi-a's
    certificate publishes as pi-a only; without a certificate nobody connects."""
    certs = tmp_path / "certs"
    certs.mkdir()
    ca = make_certificates(certs)
    port = free_port()
    listener = TlsListener(port, ca, certs / "server.crt", certs / "server.key", "127.0.0.1")
    configs = [site_config(port, "pi-a", "a1"), site_config(port, "pi-b", "b1")]
    out = tmp_path / "broker"
    written = write_broker_files(broker_users(configs, tls=True), out, source="x", tls=listener)
    assert not (out / "husvakt.passwd").exists() and len(written) == 2
    conf = tmp_path / "mosquitto.conf"
    conf.write_text((out / "mosquitto-husvakt.conf").read_text() + "user root\n")
    broker = Mosquitto(binary=require_binary("mosquitto"), conf=conf, host="127.0.0.1", port=port)
    broker.start()
    try:
        a = Client(broker, None, None, tls=(ca, *client_certificate(certs, "pi-a")))
        stream = Client(broker, None, None, tls=(ca, *client_certificate(certs, "husvakt-stream")))
        assert not stream.subscribe("husvakt/v1/#").is_failure
        assert a.publish(readings_topic(SITE, "pi-b"), b"forged").is_failure
        assert not a.publish(readings_topic(SITE, "pi-a"), b"genuine").is_failure
        assert stream.messages.get(timeout=TIMEOUT) == (readings_topic(SITE, "pi-a"), b"genuine")
        assert stream.messages.empty()
        for c in (a, stream):
            c.close()
        with pytest.raises((ssl.SSLError, OSError)):  # no certificate: the handshake fails
            Client(broker, None, None, tls=(ca, None, None))
    finally:
        broker.stop()


def test_with_certificates_gateway_ids_must_be_unique(tmp_path):
    one = site_config(1883, "pi", "a1")
    other = one.model_copy(
        update={"gateway": one.gateway.model_copy(update={"site": "sodra"})}  # type: ignore[union-attr]
    )
    with pytest.raises(ValueError, match="must be unique"):
        broker_users([one, other], tls=True)


def test_the_command_line(tmp_path, capsys):
    demo = Path(__file__).resolve().parents[2] / "husvakt" / "data" / "demo.yaml"
    assert main(["broker", "acl", "--config", str(demo), "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "husvakt-nordskolan-pi-basement: gateway nordskolan/pi-basement" in out
    assert (tmp_path / "b" / "husvakt.acl").exists()


def test_readings_by_hand_get_no_broker_account():
    from husvakt.config import load_config

    school = load_config(
        Path(__file__).resolve().parents[2] / "config" / "scenarios" / "school.yaml"
    )
    users = broker_users([school])
    assert "manual" not in repr(users) and "pi-basement" in repr(users)


async def test_a_stream_that_was_away_gets_every_uplink_message_queued_meanwhile(locked):
    # mosquitto's default queues 1,000 messages for a persistent client that is away and drops
    # the rest without a word: the written conf raises it, so a stream restarted during a busy
    # hour still gets every gateway's batch
    import aiomqtt

    broker, out = locked
    topic = readings_topic(SITE, "pi-a")
    stream = {"hostname": broker.host, "port": broker.port, "username": "husvakt-stream",
              "password": secret(out, "husvakt-stream"), "identifier": "husvakt-stream-x",
              "clean_session": False}  # fmt: skip
    async with aiomqtt.Client(**stream) as client:
        await client.subscribe(topic, qos=1)
    gateway = {
        "username": "husvakt-nordskolan-pi-a",
        "password": secret(out, "husvakt-nordskolan-pi-a"),
    }
    async with aiomqtt.Client(broker.host, broker.port, **gateway) as client:
        for n in range(2500):
            await client.publish(topic, str(n).encode(), qos=1)
    got = []
    async with aiomqtt.Client(**stream) as client, asyncio.timeout(60):
        async for message in client.messages:
            got.append(int(message.payload))
            if len(got) == 2500:
                break
    assert got == list(range(2500))
