"""The web pages as files and routes: headers, assets, service worker, translations, config.

What a browser does with them is tested in tests/browser/ (real Chromium); these checks need no
browser and catch the mistakes that would otherwise only show there as a blank page.
"""

from __future__ import annotations

import json
import re
import shutil
import typing
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cityeye.api.app import create_app
from cityeye.config import ApiConfig, ConfigError, SiteConfig, parse_config
from cityeye.events.schema import CameraStatus, VehicleClass
from cityeye.web.config import WebConfig
from cityeye.web.routes import STATIC, shell_files, shell_version

JS = STATIC / "js"
PAGES = ("index.html", "driver.html", "operator.html")


def client(tmp_path: Path, **web: object) -> TestClient:
    """No lifespan (no `with`): static routes need neither the database nor MQTT."""
    cfg = SiteConfig(
        site="danang",
        api=ApiConfig(database_url=f"sqlite:///{tmp_path / 'web.db'}"),
        web=WebConfig.model_validate(web),
    )
    return TestClient(create_app(cfg, ingest=False))


def test_pages_are_served_with_security_headers(tmp_path: Path) -> None:
    http = client(tmp_path)
    for path in ("/web/", "/web/driver.html", "/web/operator.html", "/web/js/driver.js"):
        r = http.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "unsafe" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-cache"
    assert http.get("/web/driver.html").headers["content-type"].startswith("text/html")
    assert "javascript" in http.get("/web/js/driver.js").headers["content-type"]
    assert http.get("/web/nope.html").status_code == 404
    assert http.get("/web/../api/app.py").status_code == 404


def test_short_links_keep_the_query(tmp_path: Path) -> None:
    http = client(tmp_path)
    r = http.get("/driver?lat=16.06&lon=108.2", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (307, "/web/driver.html?lat=16.06&lon=108.2")
    r = http.get("/operator", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (307, "/web/operator.html")


def _references(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/web/[^"]+)"', html)


def test_every_file_a_page_loads_is_served(tmp_path: Path) -> None:
    http = client(tmp_path)
    seen = set()
    for page in PAGES:
        refs = _references((STATIC / page).read_text(encoding="utf-8"))
        assert refs, page
        seen.update(refs)
    for js in JS.glob("*.js"):
        for mod in re.findall(r'from "\./([^"]+)"', js.read_text(encoding="utf-8")):
            assert (JS / mod).is_file(), f"{js.name} imports missing {mod}"
            seen.add(f"/web/js/{mod}")
    for path in sorted(seen):
        assert http.get(path).status_code == 200, path
    # Nothing comes from another origin: no CDN, no web font, no analytics.
    for f in STATIC.rglob("*.html"):
        assert not re.search(r'(?:src|href)="(?:https?:)?//', f.read_text(encoding="utf-8")), f


def test_service_worker_precaches_the_shell_and_is_versioned_by_content(tmp_path: Path) -> None:
    http = client(tmp_path)
    r = http.get("/web/sw.js")
    assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    assert r.headers["service-worker-allowed"] == "/"  # scope / : the short links work offline too
    body = r.text
    assert "__SHELL" not in body
    version = shell_version()
    assert f'const VERSION = "{version}"' in body
    m = re.search(r"const SHELL = (\[.*?\]);", body)
    assert m
    shell = json.loads(m.group(1))
    for needed in (
        "/web/driver.html",
        "/web/operator.html",
        "/web/js/driver.js",
        "/web/vendor/leaflet/leaflet.js",
    ):
        assert needed in shell
    for path in shell:
        assert http.get(path).status_code == 200, path
    assert "/web/sw.js" not in shell

    copy = tmp_path / "static"
    shutil.copytree(STATIC, copy)
    assert shell_version(copy) == version
    (copy / "css" / "app.css").write_text((copy / "css" / "app.css").read_text() + "\n/* changed */\n")
    assert shell_version(copy) != version  # a release replaces the cached shell
    assert shell_files(copy) == shell_files()


def test_page_config_and_tile_server(tmp_path: Path) -> None:
    http = client(tmp_path)
    cfg = http.get("/web/config.json").json()
    assert cfg["site"] == "danang"
    assert cfg["tile_url"] is None  # offline by default
    assert (
        http.get("/web/driver.html").headers["content-security-policy"].count("img-src 'self' data: blob:;")
        == 1
    )

    http = client(
        tmp_path,
        tile_url="https://{s}.tiles.danang.example/{z}/{x}/{y}.png",
        tile_attribution="© city",
        center=(16.06, 108.22),
        refresh_s=10,
    )
    cfg = http.get("/web/config.json").json()
    assert cfg["tile_url"] == "https://{s}.tiles.danang.example/{z}/{x}/{y}.png"
    assert (cfg["center"], cfg["refresh_s"], cfg["tile_attribution"]) == ([16.06, 108.22], 10, "© city")
    csp = http.get("/web/driver.html").headers["content-security-policy"]
    assert "img-src 'self' data: blob: https://*.tiles.danang.example;" in csp


@pytest.mark.parametrize(
    ("web", "message"),
    [
        ("tile_url: ftp://tiles/{z}/{x}/{y}.png", "must be an http(s) URL template"),
        ("tile_url: https://tiles.example/{z}/{x}.png", "lacks {y}"),
        ("center: [200, 10]", "is not [lat, lon]"),
        ("refresh_s: 0.5", "greater than or equal to 2"),
        ("tiles: x", "unknown key"),
    ],
)
def test_bad_web_config_says_what_to_fix(web: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(f"site: x\nweb:\n  {web}\n", source="site.yaml")
    assert "site.yaml:3: web." in str(err.value)
    assert message in str(err.value)


def test_pages_can_be_turned_off(tmp_path: Path) -> None:
    http = client(tmp_path, enabled=False)
    assert http.get("/web/driver.html").status_code == 404
    assert http.get("/driver").status_code == 404
    assert http.get("/healthz").status_code in (200, 503)  # the API itself stays


def _dictionaries() -> dict[str, set[str]]:
    text = (JS / "i18n.js").read_text(encoding="utf-8")
    body = text[text.index("const STRINGS = {") : text.index("\n};\n")]
    out: dict[str, set[str]] = {}
    for m in re.finditer(r"\n  (\w+): \{(.*?)\n  \},", body, re.S):
        out[m.group(1)] = set(re.findall(r'^\s+"([^"]+)":', m.group(2), re.M))
    return out


def test_vietnamese_and_english_are_complete() -> None:
    d = _dictionaries()
    assert set(d) == {"en", "vi"}
    assert d["en"] == d["vi"], {"only en": d["en"] - d["vi"], "only vi": d["vi"] - d["en"]}
    used = set()
    for page in PAGES:
        used |= set(re.findall(r'data-i18n(?:-label|-placeholder)?="([^"]+)"', (STATIC / page).read_text()))
        used |= set(re.findall(r'name="cityeye-title" content="([^"]+)"', (STATIC / page).read_text()))
    for js in JS.glob("*.js"):
        used |= set(re.findall(r'\bt\("([^"]+)"', js.read_text(encoding="utf-8")))
        # tn(): plural forms; every language needs at least `.other`.
        used |= {f"{k}.other" for k in re.findall(r'\btn\("([^"]+)"', js.read_text(encoding="utf-8"))}
    assert used - d["en"] == set()
    # Keys built at run time from the shared event schema: every camera status and vehicle class.
    statuses = {f"status.{s.value}" for s in CameraStatus} | {"status.unknown"}
    classes = {f"class.{c}" for c in typing.get_args(VehicleClass)}
    classes |= {"driver.only.car", "driver.only.motorcycle"}  # zone `vehicle` values
    assert statuses | classes <= d["en"]


def test_every_api_call_of_the_pages_exists(tmp_path: Path) -> None:
    """The pages' whole contract with the API (js/api.js PATHS) against the app's real routes."""
    text = (JS / "api.js").read_text(encoding="utf-8")
    block = text[text.index("export const PATHS = {") : text.index("};", text.index("export const PATHS"))]
    paths = dict(re.findall(r'(\w+): "([^"]+)"', block))
    assert {"nearby", "lots", "zonesGeojson", "history", "cameras", "traffic", "live"} <= set(paths)
    app = create_app(SiteConfig(api=ApiConfig(database_url=f"sqlite:///{tmp_path / 'c.db'}")), ingest=False)
    spec = app.openapi()["paths"]
    # The API writes the zone id as {uid}; the pages write {id}.
    normalised = {re.sub(r"\{[^}]+\}", "{id}", p) for p in spec}
    for name, path in paths.items():
        assert path in normalised, f"js/api.js PATHS.{name} = {path!r} is not in the API's OpenAPI paths"
    # The query parameters the pages send exist too (FastAPI ignores unknown ones silently).
    params = {p: {q["name"] for op in spec[p].values() for q in op.get("parameters", [])} for p in spec}
    assert {"lat", "lon", "radius_m", "min_free", "limit", "vehicle"} <= params["/v1/parking/nearby"]
    assert {"from", "to", "bucket", "by", "format"} <= params["/v1/traffic/counts"]
    assert {"from", "to", "bucket", "format"} <= params["/v1/parking/zones/{uid}/history"]
    # EventSource cannot send headers: the API must accept the key as the api_key query parameter.
    schemes = app.openapi()["components"]["securitySchemes"].values()
    assert {"type": "apiKey", "in": "query", "name": "api_key"} in [
        {k: v for k, v in sc.items() if k in ("type", "in", "name")} for sc in schemes
    ]
