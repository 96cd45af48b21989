"""Measure the operator page at city scale (not a test): prints one JSON object.

    python -m tests.browser.measure_scale [CAMERAS] [ZONES_PER_CAMERA] [REPEATS]   (from the repo root)

Real parts as in the browser tests (Mosquitto, `cityeye api` as a process, Debian's Chromium):
publishes CAMERAS x ZONES_PER_CAMERA spaces, then per repeat opens /operator in a fresh page and
times (a) navigation until every zone is listed and the live stream is open, and (b) one camera's
new snapshot (every bay turned occupied) until its lot total shows it. Medians are printed with
every sample; on a shared 2-core machine the spread is large, so read them with it.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from cityeye.events.schema import AreaState, SpaceState
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, LON0, Edge, north, start_api, stop_api, wait_until
from tests.conftest import start_mosquitto


def lot(camera: int, per_camera: int, *, all_occupied: bool, flip: int = 0) -> list[SpaceState | AreaState]:
    return [
        SpaceState(
            id=f"S{i}",
            occupied=all_occupied or (i + flip) % 3 == 0,
            score=0.5,
            lat=north(5 * i),
            lon=LON0 + 0.001 * camera,
            lot=f"L{camera}",
        )
        for i in range(per_camera)
    ]


def main(cameras: int = 10, per_camera: int = 1000, repeats: int = 3) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="cityeye-web-scale-"))
    broker = start_mosquitto(tmp)
    api = start_api(tmp, broker)
    total = cameras * per_camera
    try:
        t0 = time.monotonic()
        edges = [Edge(broker, f"cam{c:02d}") for c in range(cameras)]
        for c, e in enumerate(edges):
            e.status()
            e.occupancy(lot(c, per_camera, all_occupied=False))
        wait_until(
            "every zone in the API",
            lambda: len(api.get("/v1/parking/zones.geojson")["features"]) == total,
            timeout=300,
        )
        ingest_s = time.monotonic() - t0
        ready, live, heap = [], [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            for r in range(repeats):
                e = edges[0]
                e.occupancy(lot(0, per_camera, all_occupied=False, flip=r + 1))  # back to a mixed state
                expected_free = sum(1 for i in range(per_camera) if (i + r + 1) % 3 != 0)
                wait_until(
                    "camera 0 reset",
                    lambda n=expected_free: (
                        next(x["free"] for x in api.get("/v1/parking/lots")["lots"] if x["lot"] == "L0") == n
                    ),
                )
                page = browser.new_page(viewport={"width": 1920, "height": 1080})
                t1 = time.monotonic()
                page.goto(f"{api.url}/operator")
                page.locator("#zone-count").filter(has_text=f"{total:,} zones").wait_for(timeout=120_000)
                page.locator('#live[data-state="live"]').wait_for(timeout=60_000)
                ready.append(time.monotonic() - t1)
                heap.append(page.evaluate("performance.memory.usedJSHeapSize") / 1e6)
                t2 = time.monotonic()
                e.occupancy(lot(0, per_camera, all_occupied=True))
                page.locator('#lots tr[data-lot="L0"]').filter(has_text=f"0 / {per_camera:,}").wait_for(
                    timeout=120_000
                )
                live.append(time.monotonic() - t2)
                page.close()
            browser.close()
        for e in edges:
            e.close()
    finally:
        stop_api(api)
        broker.proc.terminate()
    return {
        "zones": total,
        "cameras": cameras,
        "ingest_and_index_s": round(ingest_s, 2),
        "page_ready_s_median": round(statistics.median(ready), 2),
        "page_ready_s": [round(x, 2) for x in ready],
        "live_snapshot_shown_s_median": round(statistics.median(live), 2),
        "live_snapshot_shown_s": [round(x, 2) for x in live],
        "js_heap_mb_median": round(statistics.median(heap), 1),
        "note": "live = one camera's snapshot of all its bays, publish -> lot total on screen",
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:4]]
    print(json.dumps(main(*args)))
