"""Real parts for the browser tests: Debian's Chromium driven by Playwright, `cityeye api` as a process.

Nothing is downloaded: Playwright (the PyPI package, which carries its own driver) is pointed at
/usr/bin/chromium, and each test gets a fresh profile so service workers and storage never leak
from one test into the next.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import numpy.typing as npt
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from cityeye.edge.config import SnapshotConfig
from cityeye.edge.worker import snapshot_event
from cityeye.events.schema import (
    AreaState,
    CameraStatus,
    HealthEvent,
    OccupancyEvent,
    SpaceState,
    StatusEvent,
)
from cityeye.events.topics import TopicKind, topic_for
from cityeye.streams.frame import Frame
from tests.conftest import REPO, Broker
from tests.conftest import wait_for as wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright

CHROMIUM = Path(os.environ.get("CITYEYE_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO / "test-artifacts" / "browser"
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SITE = "danang"

# Da Nang, near the Han river: where the test zones are placed.
LAT0, LON0 = 16.0678, 108.2208
M_PER_DEG_LAT = 111_195.0


def north(metres: float) -> float:
    return LAT0 + metres / M_PER_DEG_LAT


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium; .ci/run does this)")
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    yield b
    b.close()


@dataclass
class Tab:
    """One page in a fresh browser profile, with every console error and page error recorded."""

    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)

    def shot(self, name: str, *, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def axe(self, **options: Any) -> list[dict[str, Any]]:
        """Run axe-core (WCAG 2.1 A/AA rules) in the page; returns the serious and critical violations."""
        # evaluate(), not a <script> tag: the pages' Content-Security-Policy rightly blocks inline scripts.
        self.page.evaluate(AXE.read_text(encoding="utf-8"))
        result: dict[str, Any] = self.page.evaluate(
            """async (opts) => await axe.run(document, {runOnly: {type: 'tag',
                values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}, ...opts})""",
            options,
        )
        return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]

    def wait_js(self, expression: str, timeout: float = 15.0) -> Any:
        """Poll a JS expression until truthy (wait_for_function would need 'unsafe-eval' under the CSP)."""
        return wait_until(expression, lambda: self.page.evaluate(expression), timeout)

    def assert_no_errors(self) -> None:
        assert not self.errors, "errors in the browser console:\n" + "\n".join(self.errors)


@pytest.fixture
def new_tab(browser: Browser) -> Iterator[Callable[..., Tab]]:
    """Factory: new_tab(viewport=(w, h), locale=..., geolocation=...) -> Tab. Contexts close at teardown."""
    tabs: list[Tab] = []

    def make(
        *,
        viewport: tuple[int, int] = (1440, 900),
        locale: str = "en-US",
        geolocation: tuple[float, float] | None = None,
        mobile: bool = False,
    ) -> Tab:
        ctx = browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]},
            locale=locale,
            geolocation={"latitude": geolocation[0], "longitude": geolocation[1]} if geolocation else None,
            permissions=["geolocation"] if geolocation else [],
            is_mobile=mobile,
            has_touch=mobile,
            device_scale_factor=2 if mobile else 1,
            service_workers="allow",
        )
        page = ctx.new_page()
        tab = Tab(ctx, page)

        def on_console(msg: ConsoleMessage) -> None:
            if msg.type == "error":
                tab.errors.append(f"console: {msg.text} ({msg.location.get('url', '')})")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: tab.errors.append(f"pageerror: {exc}"))
        tabs.append(tab)
        return tab

    yield make
    for tab in tabs:
        tab.context.close()


@dataclass
class ApiServer:
    url: str
    proc: subprocess.Popen[str]
    log: Path

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(self.url + path, params=params, timeout=10)
        r.raise_for_status()
        return r.json()


def start_api(
    tmp: Path,
    broker: Broker,
    *,
    web: dict[str, Any] | None = None,
    api: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> ApiServer:
    """`cityeye api` as its own process on a free port, exactly as an operator starts it."""
    cfg = {
        "site": SITE,
        "mqtt": {"host": broker.host, "port": broker.port},
        "api": {"host": "127.0.0.1", "database_url": f"sqlite:///{tmp / 'api.db'}", **(api or {})},
        "web": {"refresh_s": 5, **(web or {})},
    }
    cfg_path = tmp / "site.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    log = tmp / "api.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cityeye", "api", "--config", str(cfg_path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        env={k: v for k, v in os.environ.items() if k != "CITYEYE_API_KEYS"} | (env or {}),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"(http://\S+?)/? ", line + " ")
    if not m:
        proc.kill()
        raise AssertionError(f"cityeye api printed no URL: {line!r}; log:\n{log.read_text()}")
    server = ApiServer(m.group(1).rstrip("/"), proc, log)
    deadline = time.monotonic() + 30
    while True:
        try:
            health = httpx.get(server.url + "/healthz", timeout=2).json()
            if health.get("mqtt_connected"):
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError(f"cityeye api did not come up with MQTT; log:\n{log.read_text()}")
        time.sleep(0.1)
    return server


def stop_api(server: ApiServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=5)


@pytest.fixture
def api(tmp_path: Path, mosquitto: Broker) -> Iterator[ApiServer]:
    server = start_api(tmp_path, mosquitto)
    yield server
    stop_api(server)


class Edge:
    """Stands in for an edge worker: a real paho client publishing the shared schema at QoS 1."""

    def __init__(self, broker: Broker, camera: str) -> None:
        self.camera = camera
        self.seq = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _publish(self, ev: StatusEvent | OccupancyEvent | HealthEvent) -> None:
        kind = TopicKind(ev.kind)
        info = self.client.publish(
            topic_for(SITE, self.camera, kind), ev.model_dump_json(), qos=1, retain=kind != TopicKind.HEALTH
        )
        info.wait_for_publish(timeout=5)
        assert info.is_published()

    def _id(self, what: str) -> str:
        self.seq += 1
        return f"{self.camera}:test:{what}:{self.seq}"

    def status(self, status: CameraStatus = CameraStatus.ONLINE, detail: str | None = None) -> None:
        self._publish(
            StatusEvent(
                site=SITE,
                camera=self.camera,
                event_id=self._id("status"),
                observed_at=now(),
                status=status,
                detail=detail,
            )
        )

    def health(self, **fields: Any) -> None:
        health = {
            "frames_received": 100,
            "frames_analysed": 10,
            "frames_dropped": 0,
            "reconnects": 0,
            "fps": 0.1,
        }
        self._publish(
            HealthEvent.model_validate(
                {
                    "site": SITE,
                    "camera": self.camera,
                    "event_id": self._id("health"),
                    "observed_at": now().isoformat(),
                    "health": health | fields,
                }
            )
        )

    def occupancy(self, zones: list[SpaceState | AreaState]) -> None:
        self._publish(
            OccupancyEvent(
                site=SITE, camera=self.camera, event_id=self._id("occupancy"), observed_at=now(), zones=zones
            )
        )

    def snapshot(self, image: npt.NDArray[np.uint8]) -> None:
        """The frame as the edge sends it: its own encoder, QoS 0 and retained, outside any spool."""
        frame = Frame(camera_id=self.camera, index=self.seq, timestamp=now(), image=image)
        ev = snapshot_event(frame, SnapshotConfig(), SITE, self._id)
        info = self.client.publish(
            topic_for(SITE, self.camera, TopicKind.SNAPSHOT), ev.model_dump_json(), qos=0, retain=True
        )
        info.wait_for_publish(timeout=5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def edge(mosquitto: Broker) -> Iterator[Callable[[str], Edge]]:
    made: list[Edge] = []

    def make(camera: str) -> Edge:
        e = Edge(mosquitto, camera)
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)
