"""Mosquitto started with deploy/mosquitto/mosquitto.conf and deploy/mosquitto/acl, for real.

Only what cannot be the same on a test machine is rewritten: listener ports (free loopback
ports), file locations (a temporary folder), and the user Mosquitto runs as. The password file
is made with `mosquitto_passwd`, the CA and the broker certificate with `cryptography`.
"""

from __future__ import annotations

import datetime as dt
import getpass
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from cityeye.config import MqttConfig
from cityeye.edge.publisher import CameraPublisher
from cityeye.edge.spool import read_stats
from cityeye.events.config import ENV_MQTT_PASSWORD, SpoolConfig, TlsConfig
from tests.conftest import free_port, wait_port
from tests.test_edge_reliability import health, wait_for

pytest.importorskip("cryptography", reason="needs the cryptography package (dev extra)")
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SITE = "danang"
CAM, OTHER_CAM = "bach-dang-01", "bach-dang-02"  # both belong to edge-danang-01 in deploy/mosquitto/acl
EDGE, API, HEALTH = "edge-danang-01", "cityeye-api", "health"
SAMPLE = Path(__file__).resolve().parents[1] / "core" / "samples" / "pucpr"


@dataclass
class Pki:
    ca: Path
    other_ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _ca(path: Path, cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _leaf(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    cn: str,
    san: list[x509.GeneralName],
    cert: Path,
    key: Path,
) -> None:
    k = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.subject)
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    _write_key(k, key)


def make_pki(folder: Path) -> Pki:
    """A throw-away CA, a broker certificate for `localhost` only, a client certificate, a stranger CA."""
    folder.mkdir()
    ca, ca_key = _ca(folder / "ca.crt", "cityeye test CA")
    _ca(folder / "other-ca.crt", "someone else's CA")
    _leaf(ca, ca_key, "localhost", [x509.DNSName("localhost")], folder / "server.crt", folder / "server.key")
    _leaf(ca, ca_key, EDGE, [], folder / "client.crt", folder / "client.key")
    return Pki(
        folder / "ca.crt",
        folder / "other-ca.crt",
        folder / "server.crt",
        folder / "server.key",
        folder / "client.crt",
        folder / "client.key",
    )


@dataclass
class DeployBroker:
    plain: int
    tls: int
    pki: Pki
    passwords: dict[str, str]
    tmp: Path
    proc: subprocess.Popen[bytes]


def deploy_conf(tmp: Path, plain: int, tls: int, pki: Pki, passwd: Path) -> str:
    """deploy/mosquitto/mosquitto.conf with only ports, file locations and the run-as user changed."""
    data = tmp / "data"
    data.mkdir()
    acl = tmp / "acl"
    shutil.copy(DEPLOY / "mosquitto" / "acl", acl)
    files = {
        "password_file": passwd,
        "acl_file": acl,
        "cafile": pki.ca,
        "certfile": pki.cert,
        "keyfile": pki.key,
        "persistence_location": f"{data}/",
    }
    out = []
    for line in (DEPLOY / "mosquitto" / "mosquitto.conf").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "listener":
            port = {"1883": plain, "8883": tls}[value.strip()]
            line = f"listener {port} 127.0.0.1"
        elif key in files:
            line = f"{key} {files[key]}"
        elif key == "log_dest":
            line = f"log_dest file {tmp / 'mosquitto.log'}"
        out.append(line)
    out.append(f"user {getpass.getuser()}")  # as root Mosquitto would switch to `mosquitto`
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeployBroker]:
    exe = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if exe is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto and mosquitto_passwd are not installed (apt-get install mosquitto)")
    tmp = tmp_path_factory.mktemp("deploy-broker")
    pki = make_pki(tmp / "pki")
    passwd = tmp / "passwd"
    passwd.write_text("")
    passwd.chmod(0o600)
    passwords = {EDGE: "edge-secret", API: "api-secret", HEALTH: "health-secret"}
    for user, pw in passwords.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, pw], check=True)
    plain, tls = free_port(), free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(deploy_conf(tmp, plain, tls, pki, passwd))
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(plain)
        wait_port(tls)
    except TimeoutError:
        proc.kill()
        log = tmp / "mosquitto.log"
        pytest.fail(
            "Mosquitto did not start with the deploy configuration: "
            + (log.read_text() if log.exists() else "")
        )
    yield DeployBroker(plain, tls, pki, passwords, tmp, proc)
    proc.terminate()
    proc.wait(timeout=10)


class Client:
    """A plain paho client that records CONNACK and PUBACK reason codes and what it receives."""

    def __init__(self, port: int, user: str | None = None, password: str | None = None) -> None:
        self.connack: ReasonCode | None = None
        self.pubacks: dict[int, ReasonCode] = {}
        self.subacks: list[ReasonCode] = []
        self.messages: list[tuple[str, bytes]] = []
        self.done = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
        if user:
            self.c.username_pw_set(user, password)
        self.c.on_connect = self._on_connect
        self.c.on_publish = lambda c, u, mid, rc, p=None: self.pubacks.__setitem__(mid, rc)
        self.c.on_subscribe = lambda c, u, mid, rcs, p=None: self.subacks.extend(rcs)
        self.c.on_message = lambda c, u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        wait_for("CONNACK", self.done.is_set, timeout=10)

    def _on_connect(self, c: mqtt.Client, u: Any, f: Any, rc: ReasonCode, p: Any = None) -> None:
        self.connack = rc
        self.done.set()

    def publish(self, topic: str, payload: bytes = b"{}") -> ReasonCode:
        info = self.c.publish(topic, payload, qos=1)
        rc = wait_for(f"PUBACK on {topic}", lambda: self.pubacks.get(info.mid), timeout=10)
        assert rc is not None
        return rc

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def tls_cfg(b: DeployBroker, tmp: Path, *, host: str = "localhost", **tls: Any) -> MqttConfig:
    return MqttConfig(
        host=host,
        port=b.tls,
        username=EDGE,
        tls=TlsConfig(**{"ca_file": b.pki.ca, **tls}),
        spool=SpoolConfig(dir=tmp / "spool", flush_timeout_s=5),
    )


@pytest.fixture
def edge_password(broker: DeployBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_MQTT_PASSWORD, broker.passwords[EDGE])


def test_anonymous_clients_are_refused(broker: DeployBroker) -> None:
    c = Client(broker.plain)
    try:
        assert c.connack is not None and c.connack.is_failure
        assert c.connack.getName() == "Not authorized"
    finally:
        c.close()


def test_edge_over_tls_reaches_the_read_only_api_user(
    broker: DeployBroker, tmp_path: Path, edge_password: None
) -> None:
    api = Client(broker.plain, API, broker.passwords[API])
    api.c.subscribe("cityeye/v1/#", qos=1)
    wait_for("SUBACK", lambda: api.subacks)
    assert not api.subacks[0].is_failure
    pub = CameraPublisher(SITE, CAM, tls_cfg(broker, tmp_path), "b1")
    try:
        pub.start()
        wait_for("TLS connection", pub.connected.is_set)
        pub.publish(health(pub, 7))
        wait_for("delivery", lambda: any(t.endswith(f"/{CAM}/health") for t, _ in api.messages))
        assert pub.last_error is None
    finally:
        pub.stop()
        api.close()
    assert read_stats(pub.spool.path).queued == 0 and read_stats(pub.spool.path).rejected == 0


def test_edge_may_write_only_its_own_cameras(broker: DeployBroker) -> None:
    edge = Client(broker.plain, EDGE, broker.passwords[EDGE])
    api = Client(broker.plain, API, broker.passwords[API])
    api.c.subscribe("cityeye/v1/#", qos=1)
    wait_for("SUBACK", lambda: api.subacks)
    edge.c.subscribe("cityeye/v1/#", qos=1)  # granted by Mosquitto, but the ACL filters every message
    wait_for("SUBACK", lambda: edge.subacks)
    try:
        assert not edge.publish(f"cityeye/v1/{SITE}/{CAM}/status").is_failure
        assert not edge.publish(f"cityeye/v1/{SITE}/{OTHER_CAM}/health").is_failure
        for topic in (
            f"cityeye/v1/{SITE}/someone-elses-cam/status",  # another box's camera
            f"cityeye/v1/hanoi/{CAM}/status",  # the same camera id in another site
            "somewhere/else",
        ):
            assert edge.publish(topic).getName() == "Not authorized", topic
        time.sleep(0.3)
        assert edge.messages == []  # an edge box reads nothing, not even its own topics
        topics = {t for t, _ in api.messages}
        assert topics == {f"cityeye/v1/{SITE}/{CAM}/status", f"cityeye/v1/{SITE}/{OTHER_CAM}/health"}
    finally:
        edge.close()
        api.close()


def test_api_user_may_only_read(broker: DeployBroker) -> None:
    api = Client(broker.plain, API, broker.passwords[API])
    watcher = Client(broker.plain, API, broker.passwords[API])
    topic = f"cityeye/v1/{SITE}/{CAM}/health"  # not retained: anything arriving comes from this test
    watcher.c.subscribe(topic, qos=1)
    wait_for("SUBACK", lambda: watcher.subacks)
    try:
        assert api.publish(topic).getName() == "Not authorized"
        time.sleep(0.3)
        assert watcher.messages == []
    finally:
        api.close()
        watcher.close()


def test_publisher_on_a_foreign_topic_is_refused_counted_and_reported(
    broker: DeployBroker, tmp_path: Path, edge_password: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A camera the ACL does not give this box: its events are refused, kept, counted, not re-sent."""
    pub = CameraPublisher(SITE, "not-my-camera", tls_cfg(broker, tmp_path), "b1")
    try:
        with caplog.at_level(logging.ERROR, logger="cityeye.edge.publisher"):
            pub.start()
            wait_for("connection", pub.connected.is_set)
            for n in range(3):
                pub.publish(health(pub, n))
            wait_for("the refusals", lambda: pub.spool.stats().rejected >= 4)  # 3 + its `online`
        assert pub.spool.queued == 0  # nothing is retried forever...
        assert (pub.spool.stats().rejected_held or 0) >= 4  # ...and nothing is deleted either
        assert "Not authorized" in caplog.text and f"cityeye/v1/{SITE}/not-my-camera/#" in caplog.text
        assert pub._spool_health()["spool_rejected"] == pub.spool.stats().rejected  # the next health report
    finally:
        pub.stop(timeout_s=1)


def test_wrong_password_is_a_clear_error_and_the_worker_keeps_retrying(
    broker: DeployBroker, tmp_path: Path
) -> None:
    """The real `cityeye edge` process: refused, says why, backs off, stays up, keeps its events."""
    cfg = {
        "site": SITE,
        "mqtt": {
            "host": "localhost",
            "port": broker.tls,
            "username": EDGE,
            "tls": {"ca_file": str(broker.pki.ca)},
            "spool": {"dir": str(tmp_path / "spool"), "flush_timeout_s": 2},
        },
        "cameras": [
            {
                "id": CAM,
                "source": str(SAMPLE / "frames"),
                "mode": "parking",
                "interval_s": 0.5,
                "loop": True,
                "zones": str(SAMPLE / "zones.geojson"),
            }
        ],
        "health_interval_s": 1.0,
    }
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = tmp_path / "edge.log"
    env = {**os.environ, ENV_MQTT_PASSWORD: "not-the-password"}
    before = (broker.tmp / "mosquitto.log").read_text(errors="replace").count("disconnected, not authorised")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cityeye", "edge", "--config", str(path)], stdout=out, stderr=out, env=env
        )
    broker_log = broker.tmp / "mosquitto.log"

    def refusals() -> int:  # the broker's own record of each refused login (it names no client id)
        return broker_log.read_text(errors="replace").count("disconnected, not authorised")

    try:
        wait_for("three refused attempts", lambda: refusals() >= before + 3, timeout=60)
        assert proc.poll() is None, log.read_text()
        text = log.read_text()
        assert f"refused user '{EDGE}'" in text and ENV_MQTT_PASSWORD in text, text
        assert "retrying with back-off" in text
        assert text.count(f"refused user '{EDGE}'") == 1  # said once, not once per attempt
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
        assert read_stats(tmp_path / "spool" / SITE / f"{CAM}.sqlite").queued >= 1  # kept for later
    finally:
        if proc.poll() is None:
            proc.kill()


def test_tls_errors_say_what_to_fix(broker: DeployBroker, tmp_path: Path, edge_password: None) -> None:
    cases = [
        (tls_cfg(broker, tmp_path / "a", ca_file=broker.pki.other_ca), "mqtt.tls.ca_file"),
        (tls_cfg(broker, tmp_path / "b", host="127.0.0.1"), "mqtt.tls.insecure"),
    ]
    for cfg, hint in cases:
        pub = CameraPublisher(SITE, CAM, cfg, "b1")
        try:
            pub.start()
            wait_for(f"an error naming {hint}", lambda: hint in (pub.last_error or ""))  # noqa: B023
            assert not pub.connected.is_set()
        finally:
            pub.stop(timeout_s=0)
    # the broker's name is not in its certificate, but the chain is ours: insecure connects
    pub = CameraPublisher(SITE, CAM, tls_cfg(broker, tmp_path / "c", host="127.0.0.1", insecure=True), "b1")
    try:
        pub.start()
        wait_for("connection", pub.connected.is_set)
    finally:
        pub.stop()


def test_client_certificate_is_loaded_and_bad_files_are_named(broker: DeployBroker, tmp_path: Path) -> None:
    ok = TlsConfig(ca_file=broker.pki.ca, cert_file=broker.pki.client_cert, key_file=broker.pki.client_key)
    ok.context()
    with pytest.raises(ValueError, match=r"mqtt\.tls\.ca_file"):
        TlsConfig(ca_file=tmp_path / "missing.pem").context()
    with pytest.raises(ValueError, match="not a matching"):
        TlsConfig(ca_file=broker.pki.ca, cert_file=broker.pki.client_cert, key_file=broker.pki.key).context()
    with pytest.raises(ValueError, match="key_file is set but cert_file is not"):
        TlsConfig(key_file=broker.pki.client_key)


def test_compose_broker_health_check_works_against_this_configuration(
    broker: DeployBroker, tmp_path: Path
) -> None:
    if shutil.which("mosquitto_sub") is None:
        pytest.skip("mosquitto_sub is not installed (apt-get install mosquitto-clients; .ci/run does this)")
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    test = compose["services"]["broker"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    secret = tmp_path / "health_mqtt_password"

    def run(password: str) -> int:
        secret.write_text(password)
        cmd = (
            test[1]
            .replace("$$", "$")  # Compose's escape for a literal $
            .replace("-p 1883", f"-p {broker.plain}")
            .replace("/run/secrets/health_mqtt_password", str(secret))
        )
        return subprocess.run(["sh", "-c", cmd], capture_output=True, timeout=30, check=False).returncode

    assert run(broker.passwords[HEALTH]) == 0
    assert run("wrong") != 0
