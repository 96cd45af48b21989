"""Edge spool: events/s written and replayed, and disk use per 10,000 events; JSON on stdout.

Side by side in the same run:
- writes: ``Spool.put`` (one committed transaction per event, bounds and counters included)
  against a bare SQLite INSERT+COMMIT per row with the same pragmas (the library's ceiling on
  this disk) and a bare ``write``+``fsync`` per event (the disk's ceiling for sync=full);
- replay: the spool's read+delete cycle alone, and a real ``CameraPublisher`` draining a
  backlog into a real Mosquitto against bare paho QoS 1 publishing of the same payloads with
  the same in-flight window (the broker link's ceiling);
- disk: file size (database + WAL) with 10,000 queued events of each kind, and after draining.

Payloads are real schema events: a health report and a 40-space occupancy snapshot (the size
of one PKLot camera). Each figure is the median of ``--repeat`` runs; the machine's load
average is reported because other processes share the cores.

    python benchmarks/spool.py [--events 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cityeye.edge.publisher import WINDOW, CameraPublisher
from cityeye.edge.spool import Spool
from cityeye.events.config import MqttConfig, SpoolConfig
from cityeye.events.schema import CameraHealth, HealthEvent, OccupancyEvent, SpaceState

SITE, CAM = "bench", "cam-1"
Sync = Literal["full", "normal"]
SYNCS: tuple[Sync, ...] = ("full", "normal")


def payloads() -> dict[str, bytes]:
    now = datetime.now(UTC)
    health = HealthEvent(
        site=SITE,
        camera=CAM,
        event_id=f"{SITE}:{CAM}:18f3a2b4c5d.12:health:123456",
        observed_at=now,
        health=CameraHealth(
            frames_received=123456,
            frames_analysed=12345,
            frames_dropped=12,
            reconnects=1,
            fps=0.1,
            last_frame_age_s=0.4,
            inference_ms=187.5,
            spool_queued=1234,
            spool_oldest_age_s=3600.0,
            spool_dropped=0,
            spool_rejected=0,
        ),
    )
    occupancy = OccupancyEvent(
        site=SITE,
        camera=CAM,
        event_id=f"{SITE}:{CAM}:18f3a2b4c5d.12:occupancy:123457",
        observed_at=now,
        zones=[
            SpaceState(
                id=str(i), occupied=i % 3 == 0, score=0.87, lot="ufpr05", lon=108.2022 + i * 1e-5, lat=16.0544
            )
            for i in range(1, 41)
        ],
    )
    return {"health": health.model_dump_json().encode(), "occupancy": occupancy.model_dump_json().encode()}


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if not p.name.endswith(".lock"))


def rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("inf")


def median_of(repeat: int, fn: Callable[[], float]) -> float:
    """Median of repeated runs: other processes share the cores, one run can be an outlier."""
    return round(statistics.median(fn() for _ in range(repeat)), 1)


# -- writes ---------------------------------------------------------------------------------


def spool_put(tmp: Path, payload: bytes, n: int, sync: Sync) -> float:
    path = tmp / f"put-{time.monotonic_ns()}.sqlite"
    spool = Spool(path, max_bytes=1 << 34, max_age_s=1e9, sync=sync)
    t0 = time.perf_counter()
    for i in range(n):
        spool.put("cityeye/v1/bench/cam-1/x", payload, retain=False, event_id=f"e{i}")
    dt = time.perf_counter() - t0
    spool.close()
    return rate(n, dt)


def sqlite_insert(tmp: Path, payload: bytes, n: int, sync: Sync) -> float:
    """The peer: one bare INSERT and COMMIT per event, same journal and sync mode."""
    db = sqlite3.connect(tmp / f"bare-{time.monotonic_ns()}.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {sync.upper()}")
    db.execute("CREATE TABLE q (seq INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB)")
    t0 = time.perf_counter()
    for _ in range(n):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO q(payload) VALUES (?)", (payload,))
        db.execute("COMMIT")
    dt = time.perf_counter() - t0
    db.close()
    return rate(n, dt)


def fsync_append(tmp: Path, payload: bytes, n: int) -> float:
    """The disk's ceiling for durable appends: one write and one fsync per event."""
    fd = os.open(tmp / f"raw-{time.monotonic_ns()}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    t0 = time.perf_counter()
    for _ in range(n):
        os.write(fd, payload)
        os.fsync(fd)
    dt = time.perf_counter() - t0
    os.close(fd)
    return rate(n, dt)


# -- replay ---------------------------------------------------------------------------------


def filled(tmp: Path, payload: bytes, n: int) -> Path:
    path = tmp / f"fill-{time.monotonic_ns()}.sqlite"
    spool = Spool(path, max_bytes=1 << 34, max_age_s=1e9, sync="normal")
    for i in range(n):
        spool.put("cityeye/v1/bench/cam-1/health", payload, retain=False, event_id=f"e{i}")
    spool.close()
    return path


def spool_drain(tmp: Path, payload: bytes, n: int) -> float:
    """Read a window, delete it (what PUBACKs cause), repeat: the spool's own replay cost."""
    spool = Spool(filled(tmp, payload, n), max_bytes=1 << 34, max_age_s=1e9, sync="full")
    t0 = time.perf_counter()
    while rows := spool.pending(limit=WINDOW):
        spool.ack(r.seq for r in rows)
    dt = time.perf_counter() - t0
    spool.close()
    return rate(n, dt)


def start_broker(tmp: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    exe = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if exe is None:
        return None
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.05)
    proc.kill()
    return None


def publisher_drain(tmp: Path, payload: bytes, n: int, port: int, sync: Sync) -> float:
    """A real CameraPublisher replaying a backlog of n events to Mosquitto, until all are acknowledged."""
    spool_dir = tmp / f"pub-{time.monotonic_ns()}"
    cfg = MqttConfig(port=port, spool=SpoolConfig(dir=spool_dir, sync=sync, max_mb=1 << 14))
    pub = CameraPublisher(SITE, CAM, cfg, "bench")
    for i in range(n):
        pub.spool.put(f"cityeye/v1/{SITE}/{CAM}/health", payload, retain=False, event_id=f"e{i}")
    t0 = time.perf_counter()
    pub.start()
    while pub.spool.queued > 0:
        time.sleep(0.002)
    dt = time.perf_counter() - t0
    pub.stop(timeout_s=5)
    return rate(n, dt)


def paho_direct(payload: bytes, n: int, port: int) -> float:
    """The peer: bare paho QoS 1 with the same in-flight window, no spool (the broker link's ceiling)."""
    done = threading.Semaphore(0)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(WINDOW)
    c.max_queued_messages_set(0)
    c.on_publish = lambda *a: done.release()
    c.connect("127.0.0.1", port)
    c.loop_start()
    t0 = time.perf_counter()
    for _ in range(n):
        c.publish(f"cityeye/v1/{SITE}/{CAM}/health", payload, qos=1)
    for _ in range(n):
        done.acquire()
    dt = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return rate(n, dt)


# -- disk -----------------------------------------------------------------------------------


def disk_use(tmp: Path, payload: bytes, n: int = 10_000) -> dict[str, float]:
    path = tmp / f"disk-{time.monotonic_ns()}.sqlite"
    spool = Spool(path, max_bytes=1 << 34, max_age_s=1e9, sync="normal")
    for i in range(n):
        spool.put("cityeye/v1/danang/bach-dang-01/occupancy", payload, retain=False, event_id=f"e{i}")
    queued = disk_bytes(path)
    while rows := spool.pending(limit=500):
        spool.ack(r.seq for r in rows)
    spool.close()  # checkpoints and truncates the WAL
    return {
        "payload_bytes": len(payload),
        "queued_mib": round(queued / 2**20, 2),
        "overhead_per_event_bytes": round(queued / n - len(payload), 1),
        "after_drain_mib": round(disk_bytes(path) / 2**20, 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--events", type=int, default=2000, help="events per timed run (default 2000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is reported")
    ap.add_argument("--dir", type=Path, help="folder on the disk to measure (default: a temporary folder)")
    args = ap.parse_args(argv)
    n, rep = args.events, args.repeat
    tmp = Path(tempfile.mkdtemp(prefix="cityeye-spool-bench-", dir=args.dir))
    out: dict[str, Any] = {
        "events_per_run": n,
        "repeat": rep,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "folder": str(tmp),
    }
    try:
        p = payloads()
        writes: dict[str, Any] = {}
        for kind, payload in p.items():
            row: dict[str, float] = {"payload_bytes": len(payload)}
            for sync in SYNCS:
                row[f"spool_put_{sync}_per_s"] = median_of(rep, partial(spool_put, tmp, payload, n, sync))
                row[f"bare_sqlite_{sync}_per_s"] = median_of(
                    rep, partial(sqlite_insert, tmp, payload, n, sync)
                )
            row["bare_write_fsync_per_s"] = median_of(rep, partial(fsync_append, tmp, payload, n))
            writes[kind] = row
        out["write"] = writes
        health = p["health"]
        replay: dict[str, Any] = {
            "spool_read_ack_per_s": median_of(rep, partial(spool_drain, tmp, health, n))
        }
        broker = start_broker(tmp)
        if broker is None:
            replay["mosquitto"] = "not installed: publisher replay not measured"
        else:
            proc, port = broker
            try:
                for sync in SYNCS:
                    replay[f"publisher_to_mosquitto_{sync}_per_s"] = median_of(
                        rep, partial(publisher_drain, tmp, health, n, port, sync)
                    )
                replay["bare_paho_qos1_per_s"] = median_of(rep, partial(paho_direct, health, n, port))
            finally:
                proc.terminate()
                proc.wait(timeout=10)
        out["replay"] = replay
        out["disk_per_10000_events"] = {kind: disk_use(tmp, payload) for kind, payload in p.items()}
        out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
