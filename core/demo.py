"""`cityeye demo`: broker + API + edge worker on one machine, on embedded defaults, no internet.

The demo is the real system (separate processes talking MQTT), only configured for loopback,
so what a user sees in it is what a site runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import FrameType

import yaml

from cityeye.broker import ENV_BROKER, free_port, start_broker, wait_port

SAMPLES = Path(__file__).resolve().parent / "samples"
SAMPLE = SAMPLES / "pucpr"
ENV_SOURCE = "CITYEYE_DEMO_SOURCE"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _wait_http(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def demo_config(
    workdir: Path, mqtt_port: int, api_port: int, source: str, interval_s: float, protocol: str = "5"
) -> dict[str, object]:
    camera: dict[str, object] = {
        "id": "pucpr-cam1",
        "source": source,
        "mode": "parking",
        "interval_s": interval_s,
        "loop": True,
        "lot": "pucpr-demo",
        "snapshot": {"every_s": 30.0},  # the operator page shows the camera's view
    }
    if Path(source).resolve() == (SAMPLE / "frames").resolve():
        camera["zones"] = str(SAMPLE / "zones.geojson")
        camera["calibration"] = str(SAMPLE / "calibration.json")
    return {
        "site": "demo",
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "protocol": protocol},
        "cameras": [camera],
        "api": {
            "host": "127.0.0.1",
            "port": api_port,
            "database_url": f"sqlite:///{workdir / 'cityeye.db'}",
            "stale_after_s": max(60.0, 6 * interval_s),
        },
        "health_interval_s": 10.0,
    }


def run_demo(args: argparse.Namespace) -> int:
    source = args.source or os.environ.get(ENV_SOURCE) or str(SAMPLE / "frames")
    if not Path(source).exists() and "://" not in source:
        raise FileNotFoundError(
            f"demo source {source} does not exist (give a folder, video or URL with --source)"
        )
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="cityeye-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    api_port = args.port if _port_free(args.port) else free_port()
    mqtt_port = free_port()
    cfg_path = workdir / "site.yaml"

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # run the `finally` below: children must not outlive the demo

    signal.signal(signal.SIGTERM, on_term)
    procs: list[subprocess.Popen[bytes]] = []
    broker, kind = start_broker(mqtt_port, workdir, args.broker or os.environ.get(ENV_BROKER, "auto"))
    procs.append(broker)
    protocol = "3.1.1" if kind == "amqtt" else "5"  # amqtt speaks MQTT 3.1.1 only
    cfg_path.write_text(
        yaml.safe_dump(demo_config(workdir, mqtt_port, api_port, source, args.interval, protocol))
    )
    try:
        try:
            wait_port(mqtt_port, 15)
        except TimeoutError:
            raise RuntimeError(f"the {kind} broker did not start; see {workdir / 'broker.log'}") from None
        base = [sys.executable, "-m", "cityeye"]
        for name in ("api", "edge"):
            log = (workdir / f"{name}.log").open("ab")
            procs.append(subprocess.Popen([*base, name, "--config", str(cfg_path)], stdout=log, stderr=log))
        url = f"http://127.0.0.1:{api_port}"
        if not _wait_http(f"{url}/healthz", 60):
            raise RuntimeError(f"the API did not come up; see {workdir / 'api.log'}")
        print(f"cityeye demo is running ({kind} broker on port {mqtt_port}; logs and config in {workdir})")
        print(f"open {url}/  (driver page {url}/driver, operator dashboard {url}/operator)")
        print(
            f"free spots near the sample lot: {url}/v1/parking/nearby?lat=16.0617&lon=108.2270&radius_m=500"
        )
        sys.stdout.flush()
        deadline = time.monotonic() + args.duration if args.duration else None
        while deadline is None or time.monotonic() < deadline:
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args!r} exited with {p.returncode}; see the logs in {workdir}")
            time.sleep(0.5)
    finally:
        # One at a time, edge first and broker last, so the edge can still say `offline`.
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run broker, API and an edge worker on the shipped sample")
    p.add_argument(
        "--source", help=f"camera source (folder, video, URL); default ${ENV_SOURCE} or the sample"
    )
    p.add_argument("--port", type=int, default=8080, help="API port (a free one is picked if taken)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between analysed frames")
    p.add_argument("--workdir", help="folder for config, database and logs (default: a new temp folder)")
    p.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many seconds (0 = until Ctrl-C)"
    )
    p.add_argument(
        "--broker",
        choices=("auto", "mosquitto", "amqtt"),
        help=f"MQTT broker (default ${ENV_BROKER} or auto)",
    )
    p.set_defaults(func=run_demo)
