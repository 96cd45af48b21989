"""The driver page in Debian's Chromium against the real API process and a real broker.

Zones are published over MQTT exactly as an edge worker does; the page must list the nearest lot
that has a free place first (not the nearest lot), say how fresh each figure is, speak Vietnamese
and English, work from the keyboard, pass axe's WCAG AA rules, and open again with no network.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cityeye.events.schema import AreaState, SpaceState
from tests.browser.conftest import LAT0, LON0, ApiServer, Edge, Tab, north, wait_until

pytestmark = pytest.mark.e2e

CAM = "han-river-01"


def publish_city(edge: Callable[[str], Edge], api: ApiServer) -> None:
    """Three lots and a kerbside area at known distances north of the driver."""
    cam = edge(CAM)
    cam.status()
    zones: list[SpaceState | AreaState] = [
        # 80 m away but full: must not be offered.
        *(
            SpaceState(id=f"F{i}", occupied=True, score=0.9, lat=north(80), lon=LON0, lot="Full Lot")
            for i in range(3)
        ),
        # 250 m: the nearest lot with room (2 of 4 free).
        SpaceState(id="H1", occupied=True, score=0.8, lat=north(245), lon=LON0, lot="Han Market", name="H1"),
        SpaceState(id="H2", occupied=False, score=0.1, lat=north(250), lon=LON0, lot="Han Market", name="H2"),
        SpaceState(id="H3", occupied=False, score=0.1, lat=north(255), lon=LON0, lot="Han Market", name="H3"),
        SpaceState(id="H4", occupied=True, score=0.7, lat=north(240), lon=LON0, lot="Han Market", name="H4"),
        # 400 m: motorbikes only (most of Da Nang's parking), in its own lot.
        AreaState(
            id="moto",
            vehicles=10,
            capacity=40,
            lat=north(400),
            lon=LON0,
            lot="Moto Bay",
            vehicle="motorcycle",
        ),
        # 600 m: an area without a lot, shown under its own name.
        AreaState(id="riverside", vehicles=5, capacity=20, lat=north(600), lon=LON0, name="Riverside kerb"),
        # 3 km: outside the default 1 km radius.
        AreaState(id="far", vehicles=0, capacity=50, lat=north(3000), lon=LON0, lot="Far Away"),
    ]
    cam.occupancy(zones)
    wait_until(
        "the zones in /v1/parking/nearby",
        lambda: (
            len(api.get("/v1/parking/nearby", lat=LAT0, lon=LON0, radius_m=5000, min_free=0)["results"]) == 10
        ),
    )


def open_driver(tab: Tab, api: ApiServer, lat: float = LAT0, lon: float = LON0) -> None:
    tab.page.goto(f"{api.url}/driver?lat={lat}&lon={lon}")
    tab.page.locator("#results > li").first.wait_for()


def test_nearest_free_lot_first_with_freshness(
    api: ApiServer, edge: Callable[[str], Edge], new_tab: Callable[..., Tab]
) -> None:
    from playwright.sync_api import expect

    publish_city(edge, api)
    tab = new_tab(viewport=(1440, 900))
    open_driver(tab, api)
    items = tab.page.locator("#results > li")
    names = items.locator(".name")
    # "Full Lot" (80 m) is full; the motorbike lot says so.
    expect(names).to_have_text(["Han Market", "Moto Bay motorbikes only", "Riverside kerb"])
    first = items.nth(0)
    expect(first.locator(".free")).to_contain_text("2 free")
    expect(first.locator(".free")).to_contain_text("of 4")
    expect(first.locator(".meta")).to_contain_text("250 m away")
    expect(first.locator(".meta")).to_contain_text("updated now")
    expect(items.nth(1).locator(".free")).to_contain_text("30 free")
    expect(items.nth(2).locator(".free")).to_contain_text("15 free")
    expect(tab.page.locator("#status")).to_contain_text("3 places")
    # Map and list agree: one numbered pin per entry, plus the driver's own point.
    expect(tab.page.locator(".leaflet-marker-icon .pin")).to_have_count(3)
    expect(tab.page.locator(".leaflet-marker-icon .me")).to_have_count(1)
    tab.shot("driver-desktop")

    # A car leaves out the motorbike bay; lot totals would mix vehicle types, so none is shown.
    tab.page.select_option("#vehicle", "car")
    expect(names).to_have_text(["Han Market", "Riverside kerb"])
    expect(first.locator(".free")).to_have_text("2 free")
    expect(items.nth(1).locator(".free")).to_contain_text("of 20")  # a single area keeps its own total
    tab.page.select_option("#vehicle", "")
    # A larger radius brings the far lot in, still after the nearer ones.
    tab.page.select_option("#radius", "5000")
    expect(names).to_have_text(["Han Market", "Moto Bay motorbikes only", "Riverside kerb", "Far Away"])
    tab.assert_no_errors()


def test_vietnamese_from_the_browser_and_switch_to_english(
    api: ApiServer, edge: Callable[[str], Edge], new_tab: Callable[..., Tab]
) -> None:
    from playwright.sync_api import expect

    publish_city(edge, api)
    tab = new_tab(viewport=(390, 844), locale="vi-VN", mobile=True)
    open_driver(tab, api)
    page = tab.page
    expect(page.locator("html")).to_have_attribute("lang", "vi")
    expect(page.locator("h1")).to_have_text("Tìm chỗ đỗ xe")
    first = page.locator("#results > li").first
    expect(first.locator(".free")).to_contain_text("2 chỗ trống")
    expect(first.locator(".meta")).to_contain_text("cách 250 m")
    expect(first.locator(".meta")).to_contain_text("cập nhật")
    tab.shot("driver-phone-vi")

    page.select_option("#lang", "en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("h1")).to_have_text("Find parking")
    expect(first.locator(".free")).to_contain_text("2 free")
    page.reload()  # the choice is remembered
    expect(page.locator("h1")).to_have_text("Find parking")
    tab.assert_no_errors()


def test_use_my_location(api: ApiServer, edge: Callable[[str], Edge], new_tab: Callable[..., Tab]) -> None:
    from playwright.sync_api import expect

    publish_city(edge, api)
    tab = new_tab(geolocation=(north(230), LON0))
    tab.page.goto(f"{api.url}/driver")
    expect(tab.page.locator("#status")).to_contain_text("Choose where")
    tab.page.get_by_role("button", name="Use my location").click()
    first = tab.page.locator("#results > li").first
    expect(first.locator(".name")).to_have_text("Han Market")
    expect(first.locator(".meta")).to_contain_text("20 m away")
    assert f"lat={north(230):.6f}" in tab.page.url  # the search is a link that can be shared
    tab.assert_no_errors()


def test_keyboard_only_and_accessibility(
    api: ApiServer, edge: Callable[[str], Edge], new_tab: Callable[..., Tab]
) -> None:
    from playwright.sync_api import expect

    publish_city(edge, api)
    tab = new_tab()
    page = tab.page
    page.goto(f"{api.url}/driver")
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    # Coordinates typed and submitted without a mouse.
    page.locator("summary").focus()
    page.keyboard.press("Enter")
    page.locator("#lat").focus()
    page.keyboard.type("abc")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("Enter a latitude between -90 and 90")
    page.locator("#lat").fill("")
    page.keyboard.type(f"{LAT0}")
    page.keyboard.press("Tab")
    page.keyboard.type(f"{LON0}")
    page.keyboard.press("Enter")
    expect(page.locator("#results > li").first.locator(".name")).to_have_text("Han Market")
    violations = tab.axe()
    assert not violations, [(v["id"], v["help"], [n["target"] for n in v["nodes"]]) for v in violations]
    tab.assert_no_errors()


def test_opens_offline_with_the_last_figures(
    api: ApiServer, edge: Callable[[str], Edge], new_tab: Callable[..., Tab]
) -> None:
    from playwright.sync_api import expect

    publish_city(edge, api)
    tab = new_tab()
    page = tab.page
    open_driver(tab, api)
    # The service worker takes control on its first load (clients.claim); then a search is cached.
    tab.wait_js("navigator.serviceWorker.controller !== null")
    page.reload()
    page.locator("#results > li").first.wait_for()
    tab.wait_js("navigator.serviceWorker.controller !== null")

    tab.context.set_offline(True)
    page.goto(f"{api.url}/driver?lat={LAT0}&lon={LON0}")  # the short link, as shared, with no network
    expect(page.locator("h1")).to_have_text("Find parking")
    expect(page.locator("#offline")).to_be_visible()
    expect(page.locator("#offline")).to_contain_text("You are offline")
    expect(page.locator("#results > li").first.locator(".name")).to_have_text("Han Market")
    tab.shot("driver-offline")
    tab.context.set_offline(False)
    # Failed network fetches while offline are expected console noise; page errors are not.
    assert not [e for e in tab.errors if e.startswith("pageerror")], tab.errors


def test_names_from_the_site_are_shown_as_text(
    api: ApiServer, edge: Callable[[str], Edge], new_tab: Callable[..., Tab]
) -> None:
    """Lot and zone names come from site files and edge boxes: markup in them must stay text."""
    from playwright.sync_api import expect

    cam = edge("cam-x")
    cam.status()
    name = '<img src=x id=injected onerror="document.title=1"><b>Bold</b>'
    cam.occupancy([AreaState(id="z1", name=name, vehicles=0, capacity=5, lat=north(100), lon=LON0, lot=name)])
    wait_until("the zone", lambda: api.get("/v1/parking/nearby", lat=LAT0, lon=LON0)["results"])
    tab = new_tab()
    open_driver(tab, api)
    expect(tab.page.locator("#results .name")).to_have_text(name)
    tab.page.locator(".leaflet-marker-icon .pin").first.hover()
    expect(tab.page.locator(".leaflet-tooltip")).to_contain_text("<b>Bold</b>")
    tab.page.goto(f"{api.url}/operator")
    expect(tab.page.locator("#lots tbody th")).to_contain_text(name)
    tab.page.locator("path.zone").first.hover()
    expect(tab.page.locator(".leaflet-tooltip")).to_contain_text("<b>Bold</b>")
    assert tab.page.locator("#injected, .leaflet-tooltip b, #results b").count() == 0
    tab.assert_no_errors()
