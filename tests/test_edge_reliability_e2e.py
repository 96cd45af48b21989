"""Nothing lost, nothing doubled, between a real `cityeye edge` and a real `cityeye api`, through failures.

Real parts throughout: Mosquitto with persistence (as deploy/mosquitto.conf configures it), the
API and the edge worker as processes, the shipped detector on PKLot frames. The ground truth is
a subscriber with a persistent session (it sees everything the broker accepted, duplicates
included) plus what the edge's spool still holds; the API's event-id memory (``seen_events``)
must hold each of those events exactly once, in the order the camera produced them, and its
zone history must count each snapshot once.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from cityeye.edge.spool import read_stats, spool_file
from tests.conftest import Broker, free_port, shared_path
from tests.test_edge_reliability import Sniffer, start_persistent_broker, stop_broker, wait_for

pytestmark = pytest.mark.e2e

SITE, CAM = "rel", "ufpr05"
FRAMES = ("2013-03-09_09_30_04.png", "2013-04-15_07_05_01.png", "2013-04-15_07_15_01.png")
OUTAGE_S = 30.0


@dataclass
class Rig:
    tmp: Path
    cfg_path: Path
    broker: Broker
    base: str
    db: Path
    api: subprocess.Popen[bytes]

    @property
    def spool(self) -> Path:
        return spool_file(self.tmp / "spool", SITE, CAM)

    def start_edge(self, name: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"edge-{name}.log").open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "cityeye", "edge", "--config", str(self.cfg_path)], stdout=log, stderr=log
        )

    def restart_broker(self) -> None:
        self.broker = start_persistent_broker(self.tmp, self.broker.port)

    def log(self, name: str) -> str:
        return (self.tmp / f"edge-{name}.log").read_text(errors="replace")


def cityeye(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cityeye", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    src = shared_path("data", "parking", "pklot_ufpr05")
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in FRAMES:
        (frames / name).symlink_to(src / name)
    zones = tmp_path / "zones.geojson"
    out = cityeye("zones", "import-pklot", str(src / FRAMES[-1].replace(".png", ".xml")), "--out", str(zones))
    assert out.returncode == 0, out.stderr
    broker = start_persistent_broker(tmp_path)
    api_port = free_port()
    db = tmp_path / "api.db"
    cfg = {
        "site": SITE,
        "mqtt": {"host": broker.host, "port": broker.port, "spool": {"dir": "spool", "flush_timeout_s": 20}},
        "cameras": [
            {
                "id": CAM,
                "source": str(frames),
                "mode": "parking",
                "interval_s": 0.4,
                "loop": True,
                "zones": str(zones),
            }
        ],
        "api": {"host": "127.0.0.1", "port": api_port, "database_url": f"sqlite:///{db}"},
        "health_interval_s": 1.0,
    }
    cfg_path = tmp_path / "site.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    api_log = (tmp_path / "api.log").open("wb")
    # A fixed client id gives the API a session the broker keeps (and queues for) across a restart:
    # without it, events replayed before the API re-subscribes would pass it by.
    api = subprocess.Popen(
        [sys.executable, "-m", "cityeye", "api", "--config", str(cfg_path), "--client-id", "cityeye-api-rel"],
        stdout=api_log,
        stderr=api_log,
    )
    base = f"http://127.0.0.1:{api_port}"
    r = Rig(tmp_path, cfg_path, broker, base, db, api)
    try:

        def api_ready() -> bool:
            assert api.poll() is None, (tmp_path / "api.log").read_text()
            try:
                return bool(httpx.get(f"{base}/healthz", timeout=2).json().get("mqtt_connected"))
            except httpx.HTTPError:
                return False

        wait_for("the API's MQTT connection", api_ready, timeout=60)
        yield r
    finally:
        api.terminate()
        api.wait(timeout=20)
        if r.broker.proc.poll() is None:
            stop_broker(r.broker)


def occupancy_ids(sniffer: Sniffer) -> list[str]:
    """Occupancy event ids in first-arrival order (a re-delivery is allowed at the broker)."""
    seen: dict[str, None] = {}
    for m in sniffer.of_kind("occupancy"):
        seen.setdefault(m["event_id"], None)
    return list(seen)


def spool_pending(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute("SELECT topic, event_id FROM queue WHERE state = 0 ORDER BY seq").fetchall()


def api_applied(db: Path) -> list[str]:
    """Occupancy event ids the API applied, in the order it applied them (its dedup memory)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT event_id FROM seen_events ORDER BY received_at, rowid").fetchall()
    return [r[0] for r in rows if ":occupancy:" in r[0]]


def history_samples(rig: Rig, zone_id: str) -> int:
    """How many snapshots the API's history holds for one zone (each applied event counts once)."""
    uid = f"{SITE}:{CAM}:{zone_id}"
    r = httpx.get(
        f"{rig.base}/v1/parking/zones/{uid}/history",
        params={"bucket": "1m"},
        headers={"Accept": "application/json"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return sum(int(p["samples"]) for p in r.json()["points"])


def terminate(edge: subprocess.Popen[bytes], rig: Rig, name: str) -> None:
    edge.send_signal(signal.SIGTERM)
    rc = edge.wait(timeout=60)
    assert rc == 0, rig.log(name)


def check_exactly_once_in_order(rig: Rig, expected: list[str]) -> None:
    wait_for("the API to apply every event", lambda: set(api_applied(rig.db)) >= set(expected), timeout=30)
    applied = api_applied(rig.db)
    assert applied == expected, (
        "the API's events differ from what the camera produced (lost/doubled/reordered)"
    )
    zone = "1"  # any zone of the camera: every snapshot mentions every zone
    assert history_samples(rig, zone) == len(expected)
    cams = httpx.get(f"{rig.base}/v1/cameras", timeout=10).json()["cameras"]
    mine = next(c for c in cams if c["camera"] == CAM)
    assert mine["status"] == "offline" and mine["detail"] == "worker stopped"


def test_broker_outage_of_30_s_loses_and_doubles_nothing(rig: Rig) -> None:
    sniffer = Sniffer(rig.broker, session="truth")
    edge = rig.start_edge("a")
    try:
        wait_for("events before the outage", lambda: len(api_applied(rig.db)) >= 3, timeout=90)
        stop_broker(rig.broker)
        t0 = time.monotonic()
        spooled: set[str] = set()  # occupancy events that waited in the spool during the outage
        while time.monotonic() - t0 < OUTAGE_S:
            assert edge.poll() is None, rig.log("a")
            spooled |= {e for _, e in spool_pending(rig.spool) if ":occupancy:" in e}
            time.sleep(1)
        assert len(spooled) >= 3, f"the edge queued only {len(spooled)} snapshots in {OUTAGE_S} s"
        rig.restart_broker()
        wait_for("the backlog to drain", lambda: read_stats(rig.spool).queued == 0, timeout=90)
        terminate(edge, rig, "a")
        assert read_stats(rig.spool).queued == 0  # flushed before exit
        wait_for(
            "the goodbye", lambda: any(s["detail"] == "worker stopped" for s in sniffer.of_kind("status"))
        )
        expected = occupancy_ids(sniffer)
        assert spooled <= set(expected)  # what waited out the outage went out, with its ids
        check_exactly_once_in_order(rig, expected)
        assert read_stats(rig.spool).dropped == 0
    finally:
        if edge.poll() is None:
            edge.kill()
        sniffer.close()


def test_sigkill_and_restart_lose_and_double_nothing(rig: Rig) -> None:
    sniffer = Sniffer(rig.broker, session="truth")
    first = rig.start_edge("k1")
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_for("events", lambda: len(api_applied(rig.db)) >= 3, timeout=90)
        # Kill mid-stream while connected: events in flight may be at the broker but not yet off the spool.
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        left = spool_pending(rig.spool)
        wait_for(
            "the Last Will",
            lambda: any("Last Will" in (s["detail"] or "") for s in sniffer.of_kind("status")),
        )

        second = rig.start_edge("k2")
        before = len(api_applied(rig.db))
        wait_for("new events", lambda: len(api_applied(rig.db)) >= before + 3, timeout=90)
        # Now kill while the broker is away, so that a real backlog must survive the kill.
        stop_broker(rig.broker)
        wait_for(
            "a backlog of snapshots",
            lambda: sum(":occupancy:" in e for _, e in spool_pending(rig.spool)) >= 2,
            timeout=90,
        )
        os.kill(second.pid, signal.SIGKILL)
        second.wait(timeout=10)
        backlog = spool_pending(rig.spool)
        assert sum(":occupancy:" in e for _, e in backlog) >= 2
        rig.restart_broker()

        third = rig.start_edge("k3")
        second = third
        wait_for("the backlog to drain", lambda: read_stats(rig.spool).queued == 0, timeout=90)
        before = len(api_applied(rig.db))
        wait_for("events after the restart", lambda: len(api_applied(rig.db)) >= before + 2, timeout=60)
        terminate(third, rig, "k3")
        wait_for(
            "the goodbye", lambda: any(s["detail"] == "worker stopped" for s in sniffer.of_kind("status"))
        )

        expected = occupancy_ids(sniffer)
        for _, event_id in left + backlog:  # what the spool held at each kill went out, with its id
            if ":occupancy:" in event_id:
                assert event_id in expected
        boots = {e.split(":")[2] for e in expected}
        assert len(boots) == 3  # three runs, three id ranges that never collide
        check_exactly_once_in_order(rig, expected)
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
        sniffer.close()
