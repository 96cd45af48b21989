"""The operator dashboard in Debian's Chromium against the real API process and a real broker.

The headline check of the issue: with the page open, an occupancy event published over MQTT turns
a zone from free to occupied on the map and in the lists, over the API's live stream, without a
reload. Also: cameras with status, a zone's history chart, traffic counts per line, class and
direction with a bin selector, the sign-in when keys exist, and WCAG AA (axe) on three screen sizes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest

from cityeye.events.schema import AreaState, CameraStatus, LineCounts, SpaceState, TrafficEvent
from cityeye.events.topics import TopicKind, topic_for
from tests.browser.conftest import SITE, ApiServer, Edge, Tab, north, start_api, stop_api, wait_until
from tests.conftest import Broker

pytestmark = pytest.mark.e2e

CAM = "bach-dang-01"
LON = 108.2208


def bays(occupied: set[str]) -> list[SpaceState | AreaState]:
    """Lot 'Bach Dang' with six bays in a row, plus a kerbside area with no lot."""
    out: list[SpaceState | AreaState] = [
        SpaceState(
            id=f"B{i}",
            name=f"B{i}",
            occupied=f"B{i}" in occupied,
            score=0.9 if f"B{i}" in occupied else 0.05,
            lat=north(40 + 8 * i),
            lon=LON,
            lot="Bach Dang",
        )
        for i in range(1, 7)
    ]
    out.append(
        AreaState(id="kerb", name="Tran Phu kerb", vehicles=3, capacity=10, lat=north(20), lon=LON + 0.0008)
    )
    return out


def zone_uid(zone: str) -> str:
    return f"{SITE}:{CAM}:{zone}"


def test_zone_turns_occupied_live_without_reload(
    api: ApiServer, edge: Callable[[str], Edge], new_tab: Callable[..., Tab]
) -> None:
    from playwright.sync_api import expect

    cam = edge(CAM)
    cam.status(CameraStatus.STREAMING)
    cam.health(fps=0.5, reconnects=2, last_frame_age_s=1.5)
    cam.occupancy(bays(occupied={"B2", "B5"}))
    wait_until("zones in the API", lambda: len(api.get("/v1/parking/zones.geojson")["features"]) == 7)

    tab = new_tab(viewport=(1440, 900))
    page = tab.page
    page.goto(f"{api.url}/operator")
    b1 = page.locator(f'path.zone[data-zone-id="{zone_uid("B1")}"]')
    expect(b1).to_have_attribute("data-state", "free")
    expect(page.locator(f'path.zone[data-zone-id="{zone_uid("B2")}"]')).to_have_attribute(
        "data-state", "full"
    )
    expect(page.locator("path.zone")).to_have_count(7)
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    lot_row = page.locator('#lots tr[data-lot="Bach Dang"]')
    expect(lot_row).to_contain_text("4 / 6")
    cams = page.locator(f'#cams tr[data-camera="{SITE}:{CAM}"]')
    expect(cams).to_have_attribute("data-status", "streaming")
    expect(cams).to_contain_text("0.5")  # fps
    page.get_by_role("button", name="B1 · Bach Dang").click()
    expect(page.locator("#detail-state")).to_have_text("Free")
    tab.shot("operator-before")

    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    cam.occupancy(bays(occupied={"B1", "B2", "B5"}))
    expect(b1).to_have_attribute("data-state", "full", timeout=10_000)
    expect(page.locator(f'#zone-list button[data-zone-id="{zone_uid("B1")}"]')).to_have_attribute(
        "data-state", "full"
    )
    expect(page.locator("#detail-state")).to_have_text("Occupied")
    expect(lot_row).to_contain_text("3 / 6")
    assert page.evaluate("window.__sameDocument") is True
    # The history chart of the selected zone has the two snapshots' minute.
    expect(page.locator("#history-chart .uplot")).to_have_count(1)
    tab.shot("operator-after")

    # The edge sends snapshots (camera setting `snapshot:`): the row shows the newest, live.
    thumb = cams.locator("img.camera-thumb")
    expect(thumb).to_have_count(0)
    cam.snapshot(np.full((180, 320, 3), (40, 40, 220), np.uint8))
    expect(thumb).to_have_count(1, timeout=10_000)
    expect(thumb).to_have_attribute("alt", f"Latest snapshot of {CAM}")
    wait_until("the first snapshot drawn", lambda: thumb.evaluate("i => i.complete && i.naturalWidth") == 320)
    first = thumb.get_attribute("data-snapshot-at")
    cam.snapshot(np.full((144, 256, 3), (220, 120, 40), np.uint8))
    wait_until("the newer snapshot drawn", lambda: thumb.evaluate("i => i.complete && i.naturalWidth") == 256)
    assert thumb.get_attribute("data-snapshot-at") != first
    tab.shot("operator-snapshot")

    # The camera dies: its Last Will arrives as `offline` and the row says so, live.
    cam.status(CameraStatus.OFFLINE, detail="connection lost (Last Will)")
    expect(cams).to_have_attribute("data-status", "offline", timeout=10_000)
    expect(cams).to_contain_text("connection lost")
    expect(page.locator("#announce")).to_have_text(f"Camera {CAM} is offline.")
    expect(b1).to_have_attribute("data-state", "stale")
    tab.assert_no_errors()


def test_traffic_counts_per_line_class_and_direction(
    api: ApiServer, mosquitto: Broker, edge: Callable[[str], Edge], new_tab: Callable[..., Tab]
) -> None:
    from playwright.sync_api import expect

    cam = edge("nguyen-van-linh-02")
    cam.status(CameraStatus.STREAMING)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)

    def minute_bin(t0: datetime, motorcycles_in: int = 10) -> None:
        ev = TrafficEvent(
            site=SITE,
            camera="nguyen-van-linh-02",
            event_id=f"nvl:traffic:{t0.isoformat()}",
            observed_at=t0 + timedelta(minutes=1),
            bin_start=t0,
            bin_s=60,
            lines=[
                LineCounts(
                    line_id="stop-line",
                    counts={
                        "inbound": {"car": 2, "motorcycle": motorcycles_in},
                        "outbound": {"car": 1, "motorcycle": 7},
                    },
                )
            ],
        )
        info = cam.client.publish(
            topic_for(SITE, "nguyen-van-linh-02", TopicKind.TRAFFIC), ev.model_dump_json(), qos=1
        )
        info.wait_for_publish(timeout=5)

    for minute in range(20):
        minute_bin(start + timedelta(minutes=minute))
    wait_until(
        "traffic rows in the API",
        lambda: sum(r["count"] for r in api.get("/v1/traffic/counts", bucket="1h")["rows"]) == 20 * 20,
    )

    tab = new_tab(viewport=(1920, 1080))
    page = tab.page
    page.goto(f"{api.url}/operator")
    line = f"{SITE}:nguyen-van-linh-02:stop-line"
    expect(page.locator("#traffic-line")).to_have_value(line)
    table = page.locator("#traffic-table")
    expect(table.locator('tr[data-vclass="motorcycle"]')).to_contain_text("200")  # inbound, 20 x 10
    expect(table.locator('tr[data-vclass="motorcycle"]')).to_contain_text("340")  # total
    expect(table.locator('tr[data-vclass="car"]')).to_contain_text("60")
    expect(page.locator("#traffic-chart .uplot")).to_have_count(1)
    # 5-minute bins: four series (2 directions x 2 classes) over 4-5 bins; the totals do not change.
    page.select_option("#traffic-bucket", "5m")
    expect(table.locator('tr[data-vclass="motorcycle"]')).to_contain_text("340")
    expect(page.locator("#traffic-chart .u-legend .u-series")).to_have_count(5)  # x + four series
    # A new minute arrives over the live stream: the totals move without a reload.
    minute_bin(datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1), motorcycles_in=50)
    expect(table.locator('tr[data-vclass="motorcycle"]')).to_contain_text("397", timeout=15_000)  # 340 + 57
    tab.shot("operator-control-room")
    # CSV export goes through fetch with the key (a plain link could not send it).
    with page.expect_download() as dl:
        page.locator("#traffic-csv").click()
    csv_path = dl.value.path()
    lines = Path(csv_path).read_text().splitlines()
    assert lines[0] == "line_id,start,direction,vehicle_class,count"
    assert sum(int(row.rsplit(",", 1)[1]) for row in lines[1:]) == 400 + 60
    assert dl.value.suggested_filename.endswith(".csv")
    tab.assert_no_errors()


def test_sign_in_with_an_operator_key(tmp_path: Path, mosquitto: Broker, new_tab: Callable[..., Tab]) -> None:
    """Once keys exist the loopback exception ends: the page asks for a key and keeps it per tab."""
    from playwright.sync_api import expect

    good = "op-" + "k" * 30
    admin = {"X-API-Key": "ad-" + "a" * 30}
    server = start_api(
        tmp_path, mosquitto, env={"CITYEYE_API_KEYS": f"operator:{good},admin:{admin['X-API-Key']}"}
    )
    try:
        tab = new_tab(viewport=(390, 844), mobile=True)
        page = tab.page
        page.goto(f"{server.url}/operator")
        expect(page.locator("#login")).to_be_visible()
        expect(page.locator("#main")).to_be_hidden()
        page.get_by_label("API key").fill("wrong-" + "x" * 30)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#login-error")).to_contain_text("refused (401)")
        page.get_by_label("API key").fill(good)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#main")).to_be_visible()
        expect(page.locator("#live")).to_have_attribute("data-state", "live")  # the key reached the stream
        tab.shot("operator-phone")
        page.reload()  # sessionStorage: still signed in in this tab
        expect(page.locator("#main")).to_be_visible()
        page.get_by_role("button", name="Sign out").click()
        expect(page.locator("#login")).to_be_visible()

        # A key an admin made, then revoked while the page is open: the next call asks again.
        made = httpx.post(
            f"{server.url}/v1/admin/keys", json={"name": "night shift", "role": "operator"}, headers=admin
        )
        assert made.status_code == 201, made.text
        page.get_by_label("API key").fill(made.json()["key"])
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#live")).to_have_attribute("data-state", "live")
        gone = httpx.delete(f"{server.url}/v1/admin/keys/{made.json()['id']}", headers=admin)
        assert gone.status_code == 200, gone.text
        deadline = time.monotonic() + 15  # other replicas' key caches: KEY_CACHE_S
        while page.locator("#login").is_hidden() and time.monotonic() < deadline:
            page.select_option(
                "#traffic-bucket", "5m" if page.input_value("#traffic-bucket") != "5m" else "1h"
            )
            page.wait_for_timeout(500)
        expect(page.locator("#login")).to_be_visible()
        expect(page.locator("#login-error")).to_contain_text("refused (401)")
        # The refused keys are 401s the browser logs; nothing else may be.
        assert [e for e in tab.errors if "401" not in e] == []
    finally:
        stop_api(server)


@pytest.mark.parametrize(
    ("viewport", "locale", "occupied"),
    [((390, 844), "en-US", "Occupied"), ((1440, 900), "en-GB", "Occupied"), ((1920, 1080), "vi-VN", "Có xe")],
    ids=["phone", "desktop", "wall-vi"],
)
def test_accessible_at_every_size(
    api: ApiServer,
    edge: Callable[[str], Edge],
    new_tab: Callable[..., Tab],
    viewport: tuple[int, int],
    locale: str,
    occupied: str,
) -> None:
    from playwright.sync_api import expect

    cam = edge(CAM)
    cam.status(CameraStatus.STREAMING)
    cam.occupancy(bays(occupied={"B3"}))
    wait_until("zones in the API", lambda: len(api.get("/v1/parking/zones.geojson")["features"]) == 7)
    tab = new_tab(viewport=viewport, mobile=viewport[0] < 500, locale=locale)
    page = tab.page
    page.goto(f"{api.url}/operator")
    expect(page.locator("path.zone")).to_have_count(7)
    expect(page.locator("html")).to_have_attribute("lang", locale[:2])
    # Keyboard: the zone list reaches the history without a mouse.
    page.locator(f'#zone-list button[data-zone-id="{zone_uid("B3")}"]').focus()
    page.keyboard.press("Enter")
    expect(page.locator("#detail-state")).to_have_text(occupied)
    violations = tab.axe()
    assert not violations, [(v["id"], v["help"], [n["target"] for n in v["nodes"]]) for v in violations]
    # Nothing wider than the screen (no sideways scrolling on a phone).
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport[0]
    tab.shot(f"operator-{viewport[0]}x{viewport[1]}-{locale[:2]}")
    tab.assert_no_errors()


def test_city_scale_map_draws_on_canvas_and_stays_live(
    api: ApiServer, edge: Callable[[str], Edge], new_tab: Callable[..., Tab]
) -> None:
    """Past CANVAS_ABOVE (3000) zones the map switches to one canvas; lists stay capped and live."""
    from playwright.sync_api import expect

    n_cams, per_cam = 4, 1000

    def lot(c: int, occupied_every: int) -> list[SpaceState | AreaState]:
        return [
            SpaceState(
                id=f"S{i}",
                occupied=i % occupied_every == 0,
                score=0.5,
                lat=north(5 * i),
                lon=LON + 0.001 * c,
                lot=f"L{c}",
            )
            for i in range(per_cam)
        ]

    for c in range(n_cams):
        cam = edge(f"cam{c}")
        cam.status()
        cam.occupancy(lot(c, occupied_every=3))
    wait_until(
        "4000 zones in the API",
        lambda: len(api.get("/v1/parking/zones.geojson")["features"]) == n_cams * per_cam,
        timeout=60,
    )
    tab = new_tab(viewport=(1920, 1080))
    page = tab.page
    page.goto(f"{api.url}/operator")
    expect(page.locator("#zone-count")).to_have_text("4,000 zones", timeout=20_000)
    expect(page.locator(".leaflet-overlay-pane canvas")).to_have_count(1)
    expect(page.locator("path.zone")).to_have_count(0)
    expect(page.locator("#zone-list li")).to_have_count(300)  # the list is capped; the filter narrows it
    expect(page.locator('#lots tr[data-lot="L0"]')).to_contain_text("666 / 1,000")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    edge("cam0").occupancy(lot(0, occupied_every=1))  # the whole lot fills up
    expect(page.locator('#lots tr[data-lot="L0"]')).to_contain_text("0 / 1,000", timeout=20_000)
    page.get_by_label("Filter zones").fill("cam0:S99")
    expect(page.locator("#zone-list button")).to_have_count(11)  # S99 and S990..S999 of cam0
    expect(page.locator("#zone-count")).to_have_text("11 zones")
    tab.assert_no_errors()


def test_figures_age_into_stale_while_the_stream_is_quiet(
    tmp_path: Path, mosquitto: Broker, edge: Callable[[str], Edge], new_tab: Callable[..., Tab]
) -> None:
    """No message marks a figure growing old: the page applies api.stale_after_s itself."""
    from playwright.sync_api import expect

    server = start_api(tmp_path, mosquitto, api={"stale_after_s": 4})
    try:
        cam = edge(CAM)
        cam.status(CameraStatus.STREAMING)
        cam.occupancy(bays(occupied=set()))
        wait_until("zones", lambda: len(server.get("/v1/parking/zones.geojson")["features"]) == 7)
        tab = new_tab()
        page = tab.page
        page.goto(f"{server.url}/operator")
        b1 = page.locator(f'path.zone[data-zone-id="{zone_uid("B1")}"]')
        expect(b1).to_have_attribute("data-state", "free")
        expect(page.locator("#live")).to_have_attribute("data-state", "live")
        expect(b1).to_have_attribute("data-state", "stale", timeout=15_000)
        expect(page.locator('#lots tr[data-lot="Bach Dang"]')).to_contain_text("Out of date", timeout=10_000)
        cam.occupancy(bays(occupied={"B1"}))  # a fresh snapshot: trusted again, and full
        expect(b1).to_have_attribute("data-state", "full", timeout=10_000)
        tab.assert_no_errors()
    finally:
        stop_api(server)
