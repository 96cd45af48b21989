"""Central API speed: MQTT ingest against the broker's raw delivery, nearby against a trivial route.

    python benchmarks/api.py                     # both parts (about 2 minutes)
    python benchmarks/api.py --events 3000 --duration 5 --repeats 3
    python benchmarks/api.py --database-url postgresql+psycopg://user@host/db   # ingest into PostgreSQL

Prints one JSON document (progress on stderr):

- ``ingest``: a publisher process sends ``--events`` occupancy snapshots (``--zones`` zones each,
  QoS 1, as fast as the broker takes them) to a real Mosquitto. ``raw``: a plain paho subscriber
  (QoS 1) only counts them; ``api``: the API's consumer (validation, deduplication, store with
  1 min/15 min/1 h roll-ups) applies them. Both receive in this process, from the same
  publisher process, in the same run. Rates are events/s from the first to the last message
  received; ``loss`` must be 0 (checked against the store's event ids). The broker is started
  with a deep queue (``max_queued_messages``), as a site should run it.
- ``nearby``: ``cityeye api`` (one uvicorn worker, no ingest, rate limit off) over a database of
  ``--zones-city`` zones spread over a 10 km x 10 km city; an asyncio client with ``--connections``
  keep-alive connections calls ``/v1/parking/nearby`` at random points (radius 500 m, limit 20) and
  ``/livez`` (a trivial route of the same app) for ``--duration`` seconds each, interleaved
  ``--repeats`` times. Requests/s and p50/p99 latency; ``ratio`` is nearby over trivial (goal
  >= 0.7, p99 < 20 ms).

The client and server share the machine's cores; timings on a loaded machine are noisy, so rates
are medians of the repeats and the load average is recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from cityeye.broker import free_port, wait_port

CITY = (16.0544, 108.2022)  # Da Nang


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def start_broker(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        sys.exit("benchmarks/api.py: mosquitto is not installed (apt-get install mosquitto)")
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 10000000\nmax_inflight_messages 1000\n"
    )
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


# -- publisher (a child process, so it never shares a GIL with the receiver) ---------------------


def payloads(n: int, zones: int, tag: str) -> list[tuple[str, bytes]]:
    from cityeye.events.schema import OccupancyEvent, SpaceState

    rng = random.Random(1)
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    out = []
    for i in range(n):
        cam = f"cam{i % 50}"
        ev = OccupancyEvent(
            site="bench",
            camera=cam,
            event_id=f"bench:{cam}:{tag}:{i}",
            observed_at=t0 + timedelta(milliseconds=10 * i),
            zones=[
                SpaceState(
                    id=f"s{k}",
                    occupied=rng.random() < 0.5,
                    score=0.5,
                    lat=CITY[0] + (i % 50) * 1e-3,
                    lon=CITY[1] + k * 1e-5,
                    lot=f"lot{i % 50}",
                )
                for k in range(zones)
            ],
        )
        out.append((f"cityeye/v1/bench/{cam}/occupancy", ev.model_dump_json().encode()))
    return out


def publish_main(port: int, n: int, zones: int, tag: str) -> None:
    msgs = payloads(n, zones, tag)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{tag}", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    print("ready", flush=True)
    sys.stdin.readline()
    infos = [c.publish(t, p, qos=1) for t, p in msgs]
    for info in infos:
        info.wait_for_publish(timeout=300)
    c.disconnect()
    c.loop_stop()


def run_publisher(port: int, n: int, zones: int, tag: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--publish", str(port), str(n), str(zones), tag],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


# -- ingest -------------------------------------------------------------------------------------


def raw_rate(port: int, n: int, zones: int) -> dict[str, Any]:
    """Messages/s a plain QoS 1 subscriber receives: the broker's delivery ceiling here."""
    got = 0
    first = last = 0.0
    done = threading.Event()

    def on_message(c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        nonlocal got, first, last
        now = time.perf_counter()
        if got == 0:
            first = now
        got += 1
        last = now
        if got >= n:
            done.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=mqtt.MQTTv5)
    sub.max_inflight_messages_set(1000)
    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.subscribe("cityeye/v1/bench/+/occupancy", qos=1)
    sub.loop_start()
    time.sleep(0.5)
    pub = run_publisher(port, n, zones, "raw")
    go(pub)
    done.wait(600)
    pub.wait(60)
    sub.disconnect()
    sub.loop_stop()
    return {"events": n, "received": got, "events_per_s": round((got - 1) / max(last - first, 1e-9), 1)}


def api_rate(port: int, n: int, zones: int, url: str, tag: str = "api") -> dict[str, Any]:
    """The whole API app (lifespan: migrations, zone index, live feed, consumer) ingesting."""
    from fastapi.testclient import TestClient

    from cityeye.api.app import create_app
    from cityeye.api.ingest import MqttIngest
    from cityeye.config import ApiConfig, MqttConfig, SiteConfig

    cfg = SiteConfig(
        site="bench",
        mqtt=MqttConfig(host="127.0.0.1", port=port),
        api=ApiConfig(database_url=url, mqtt_topic_filter="cityeye/v1/bench/+/+"),
    )
    app = create_app(cfg, api_keys="")
    first = last = 0.0
    lock = threading.Lock()

    def on_handled(h: Any) -> None:
        nonlocal first, last
        now = time.perf_counter()
        with lock:
            if first == 0.0:
                first = now
            last = now

    with TestClient(app):
        ingest: MqttIngest = app.state.ingest
        ingest.listeners.append(on_handled)
        deadline = time.monotonic() + 30
        while not ingest.stats().subscribed and time.monotonic() < deadline:
            time.sleep(0.05)
        store = app.state.store
        before = store.seen_count()
        pub = run_publisher(port, n, zones, tag)
        go(pub)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            s = ingest.stats()
            if s.applied + s.duplicates + s.errors + s.rejected_total >= n:
                break
            time.sleep(0.05)
        pub.wait(60)
        s = ingest.stats()
        stored = store.seen_count() - before
    return {
        "events": n,
        "applied": s.applied,
        "errors": s.errors,
        "rejected": s.rejected_total,
        "loss": n - stored,
        "events_per_s": round((s.applied - 1) / max(last - first, 1e-9), 1),
        "database": url.split(":")[0],
    }


# -- nearby -------------------------------------------------------------------------------------


def seed_city(url: str, n_zones: int) -> None:
    from cityeye.api.store import Store
    from cityeye.events.schema import AreaState, OccupancyEvent, SpaceState

    store = Store(url)
    store.migrate()
    rng = random.Random(2)
    per_cam = 100
    now = datetime.now(UTC)
    for cam in range(n_zones // per_cam):
        # Each camera watches a cluster of zones somewhere in a 10 km x 10 km city.
        clat = CITY[0] + rng.uniform(-0.045, 0.045)
        clon = CITY[1] + rng.uniform(-0.047, 0.047)
        zones: list[SpaceState | AreaState] = []
        for k in range(per_cam):
            lat, lon = clat + rng.uniform(-0.001, 0.001), clon + rng.uniform(-0.001, 0.001)
            if k % 10 == 0:
                zones.append(
                    AreaState(id=f"a{k}", vehicles=rng.randrange(0, 20), capacity=20, lat=lat, lon=lon)
                )
            else:
                zones.append(SpaceState(id=f"s{k}", occupied=rng.random() < 0.6, score=0.5, lat=lat, lon=lon))
        store.apply(
            OccupancyEvent(
                site="bench", camera=f"c{cam}", event_id=f"seed{cam}", observed_at=now, zones=zones
            )
        )
    store.close()


async def load(port: int, paths: list[str], duration: float, connections: int) -> dict[str, Any]:
    """Keep-alive HTTP/1.1 GETs on `connections` sockets; latencies of completed requests."""
    lat: list[float] = []
    stop = time.perf_counter() + duration
    errors = 0

    async def worker(seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop:
                path = rng.choice(paths)
                t0 = time.perf_counter()
                writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                lat.append(time.perf_counter() - t0)
                if status != 200:
                    errors += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(connections)))
    wall = time.perf_counter() - t0
    lat.sort()
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [float("nan")] * 99
    return {
        "requests": len(lat),
        "errors": errors,
        "rps": round(len(lat) / wall, 1),
        "p50_ms": round(q[49] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
    }


def nearby_bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    db = tmp / "city.db"
    seed_city(f"sqlite:///{db}", args.zones_city)
    port = free_port()
    cfg = {
        "site": "bench",
        "api": {"host": "127.0.0.1", "port": port, "database_url": f"sqlite:///{db}", "rate_limit_per_s": 0},
    }
    (tmp / "site.yaml").write_text(yaml.safe_dump(cfg))
    api_log = (tmp / "api.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "cityeye", "api", "--config", str(tmp / "site.yaml"), "--no-ingest"],
        stdout=api_log,
        stderr=api_log,
        env={**os.environ, "CITYEYE_API_KEYS": ""},
    )
    try:
        wait_port(port, 60)
        rng = random.Random(5)
        points = [
            f"/v1/parking/nearby?lat={CITY[0] + rng.uniform(-0.045, 0.045):.6f}"
            f"&lon={CITY[1] + rng.uniform(-0.047, 0.047):.6f}&radius_m=500&min_free=1&limit=20"
            for _ in range(500)
        ]
        asyncio.run(load(port, [*points[:20], "/livez"], 2.0, args.connections))  # warm up
        check = asyncio.run(load(port, points, 1.0, 1))
        runs: dict[str, list[dict[str, Any]]] = {"trivial": [], "nearby": []}
        for r in range(args.repeats):
            for name, paths in (("trivial", ["/livez"]), ("nearby", points)):
                res = asyncio.run(load(port, paths, args.duration, args.connections))
                runs[name].append(res)
                log(f"nearby: repeat {r + 1}/{args.repeats} {name}: {res}")
    finally:
        server.terminate()
        server.wait(30)
    out: dict[str, Any] = {
        "zones": args.zones_city,
        "connections": args.connections,
        "duration_s": args.duration,
    }
    for name, rs in runs.items():
        out[name] = {
            "rps_median": statistics.median(r["rps"] for r in rs),
            "p50_ms_median": statistics.median(r["p50_ms"] for r in rs),
            "p99_ms_median": statistics.median(r["p99_ms"] for r in rs),
            "errors": sum(r["errors"] for r in rs),
            "runs": rs,
        }
    out["single_connection_nearby"] = check
    out["ratio"] = round(out["nearby"]["rps_median"] / out["trivial"]["rps_median"], 3)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--publish":
        publish_main(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--events", type=int, default=5000, help="events per ingest run")
    p.add_argument("--zones", type=int, default=20, help="zones per occupancy event")
    p.add_argument("--database-url", help="ingest into this database (default: a fresh SQLite file)")
    p.add_argument("--zones-city", type=int, default=10_000, help="zones for the nearby benchmark")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--duration", type=float, default=8.0, help="seconds per load run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip", choices=("ingest", "nearby"), action="append", default=[])
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cityeye-bench-api-"))
    result: dict[str, Any] = {"load_average": os.getloadavg(), "cpus": os.cpu_count()}
    broker, port = start_broker(tmp)
    try:
        if "ingest" not in args.skip:
            raws, apis = [], []
            for r in range(args.repeats):
                raws.append(raw_rate(port, args.events, args.zones))
                url = args.database_url or f"sqlite:///{tmp / f'ingest{r}.db'}"
                apis.append(api_rate(port, args.events, args.zones, url, tag=f"api{r}"))
                log(f"ingest: repeat {r + 1}/{args.repeats}: raw {raws[-1]}, api {apis[-1]}")
            raw = statistics.median(x["events_per_s"] for x in raws)
            api = statistics.median(x["events_per_s"] for x in apis)
            result["ingest"] = {
                "zones_per_event": args.zones,
                "raw_events_per_s_median": raw,
                "api_events_per_s_median": api,
                "ratio": round(api / raw, 3),
                "loss_total": sum(x["loss"] for x in apis),
                "raw": raws,
                "api": apis,
            }
    finally:
        broker.terminate()
        broker.wait(10)
    if "nearby" not in args.skip:
        result["nearby"] = nearby_bench(args, tmp)
    result["load_average_after"] = os.getloadavg()
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
