"""`husvakt broker acl` against a real mosquitto: a gateway publishes only as itself, reads only
its own sensors, the stream reads every gateway, and a client without credentials gets nothing."""

from __future__ import annotations

import queue
import stat
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

from gateway.wire import readings_topic, status_topic
from husvakt.broker import free_port
from husvakt.broker_acl import broker_users, mosquitto_hash, write_broker_files
from husvakt.cli import main
from husvakt.config import HusvaktConfig
from tests.conftest import require_binary
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

    def __init__(self, broker: Mosquitto, user: str | None, password: str | None) -> None:
        self.events: queue.Queue[tuple[str, object]] = queue.Queue()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if user is not None:
            self.c.username_pw_set(user, password)
        self.c.on_connect = lambda _c, _u, _f, rc, _p: self.events.put(("connect", rc))
        self.c.on_subscribe = lambda _c, _u, _m, rcs, _p: self.events.put(("subscribe", rcs))
        self.c.on_publish = lambda _c, _u, _m, rc, _p: self.events.put(("publish", rc))
        self.c.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        kind, self.connected = self.events.get(timeout=TIMEOUT)
        assert kind == "connect"

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


def test_with_certificates_gateway_ids_must_be_unique_and_no_password_is_written(tmp_path):
    one = site_config(1883, "pi", "a1")
    other = one.model_copy(
        update={"gateway": one.gateway.model_copy(update={"site": "sodra"})}  # type: ignore[union-attr]
    )
    with pytest.raises(ValueError, match="must be unique"):
        broker_users([one, other], tls=True)
    out = tmp_path / "tls"
    written = write_broker_files(broker_users([one], tls=True), out, source="x", tls=True)
    assert not (out / "husvakt.passwd").exists()
    assert "use_identity_as_username true" in (out / "mosquitto-husvakt.conf").read_text()
    assert "user pi\ntopic write husvakt/v1/nordskolan/pi/#" in (out / "husvakt.acl").read_text()
    assert len(written) == 2


def test_the_command_line(tmp_path, capsys):
    demo = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"
    assert main(["broker", "acl", "--config", str(demo), "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "husvakt-nordskolan-pi-basement: gateway nordskolan/pi-basement" in out
    assert (tmp_path / "b" / "husvakt.acl").exists()
