"""Helpers shared by the API tests (no tests here): a real PostgreSQL cluster, an edge stand-in, waits.

PostgreSQL refuses to run as root, so when the tests run as root (CI) the cluster is started as
the ``postgres`` system user that Debian's package creates, in a temporary folder it owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cityeye.api.ingest import MqttIngest
from cityeye.events.schema import AnyEvent
from cityeye.events.topics import TopicKind, topic_for
from tests.conftest import Broker, free_port, start_mosquitto, wait_port
from tests.conftest import wait_for as wait_for  # re-exported: other API test modules import it from here


def settled(ingest: MqttIngest) -> int:
    """Messages whose outcome is known (``received`` counts a message on arrival, before it is stored)."""
    s = ingest.stats()
    return s.applied + s.duplicates + s.errors + s.rejected_total + sum(s.ignored.values())


def pg_bin() -> Path | None:
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            return d
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


class Postgres:
    """A throw-away cluster on a free loopback port; ``url`` is for a fresh database each call."""

    def __init__(self) -> None:
        bindir = pg_bin()
        if bindir is None:
            pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does this)")
        self.bin = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="cityeye-pg-"))
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self.run_as = ["runuser", "-u", "postgres", "--"]
        data = self.dir / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "cityeye", "--auth=trust", "-E", "UTF8")
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(self.dir / "log"), "-w", "start"
        )
        wait_port(self.port)
        self._n = 0

    def _run(self, *cmd: str) -> None:
        proc = subprocess.run([*self.run_as, *cmd], capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {proc.stdout}{proc.stderr}")

    def url(self) -> str:
        """A new, empty database."""
        import psycopg

        self._n += 1
        name = f"t{self._n}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=cityeye dbname=postgres", autocommit=True
        ) as c:
            c.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://cityeye@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    pg = Postgres()
    yield pg
    pg.stop()


def deep_queue_mosquitto(tmp: Path) -> Broker:
    """Mosquitto that queues up to 1,000,000 messages per client instead of dropping past 1000.

    Mosquitto's default ``max_queued_messages 1000`` silently drops QoS 1 messages for a
    subscriber that is briefly slower than its publishers; a site must raise it (README, API),
    and bursts in these tests need it raised too.
    """
    broker = start_mosquitto(tmp)
    broker.proc.terminate()
    broker.proc.wait(timeout=10)
    conf = tmp / f"mosquitto-deep-{broker.port}.conf"
    conf.write_text(
        f"listener {broker.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 1000000\nmax_inflight_messages 1000\n"
    )
    exe = broker.proc.args[0]  # type: ignore[index]
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(broker.port)
    return Broker(broker.port, proc)


@pytest.fixture
def deep_mosquitto(tmp_path: Path) -> Iterator[Broker]:
    broker = deep_queue_mosquitto(tmp_path)
    yield broker
    broker.proc.terminate()
    broker.proc.wait(timeout=10)


class Edge:
    """A stand-in for an edge worker: a real paho client publishing QoS 1 like the edge does."""

    def __init__(self, broker: Broker) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.pending: list[mqtt.MQTTMessageInfo] = []

    def raw(self, topic: str, payload: bytes | str, *, retain: bool = False, wait: bool = True) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if wait:
            info.wait_for_publish(timeout=10)
            assert info.is_published()
        else:
            self.pending.append(info)

    def event(self, ev: AnyEvent, *, wait: bool = True) -> None:
        kind = TopicKind(ev.kind)
        retain = kind in (TopicKind.STATUS, TopicKind.OCCUPANCY)
        self.raw(topic_for(ev.site, ev.camera, kind), ev.model_dump_json(), retain=retain, wait=wait)

    def flush(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for info in self.pending:
            info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
            assert info.is_published()
        self.pending.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
