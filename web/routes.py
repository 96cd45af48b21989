"""Serve the operator and driver pages from the API process itself.

Same origin as the API, so the pages need no CORS and no second server, and nothing they load
comes from anywhere else (no CDN): a control room without internet still gets a working page.
The service worker is rendered at start-up with a version derived from the shipped files, so a
new release replaces the cached app shell instead of serving a stale one forever.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from cityeye import __version__
from cityeye.config import SiteConfig
from cityeye.web.config import WebConfig

# resolve(): in a strict editable install __file__ is a link in build/; the files it points to are
# the real tree, and StaticFiles refuses links that lead outside its directory.
STATIC = Path(__file__).resolve().parent / "static"
PREFIX = "/web"
SW_TEMPLATE = "sw.js"
PAGES = {"operator": "operator.html", "driver": "driver.html"}

_SHELL_SKIP = ("LICENSE",)


def shell_files(static: Path = STATIC) -> list[str]:
    """Files the service worker pre-caches: everything a page needs to start offline."""
    out = []
    for p in sorted(static.rglob("*")):
        rel = p.relative_to(static).as_posix()
        if p.is_file() and rel != SW_TEMPLATE and not p.name.startswith(_SHELL_SKIP):
            out.append(rel)
    return out


def shell_version(static: Path = STATIC) -> str:
    """Content hash of the app shell: the service worker's cache name changes exactly when a file does."""
    h = hashlib.sha256(__version__.encode())
    for rel in shell_files(static):
        h.update(rel.encode() + b"\0" + (static / rel).read_bytes())
    return h.hexdigest()[:16]


def content_security_policy(web: WebConfig) -> str:
    """Only this origin (and the configured tile server, for images) may be reached from the pages."""
    img = "'self' data: blob:" + (f" {web.tile_origin}" if web.tile_origin else "")
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src {img}; connect-src 'self'; worker-src 'self'; manifest-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


class _PageFiles(StaticFiles):
    """StaticFiles plus the headers a page served to the public needs."""

    def __init__(self, *, directory: Path, headers: dict[str, str]) -> None:
        super().__init__(directory=directory, html=True)
        self._headers = headers

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        # no-cache = revalidate (ETag) on every load: the service worker, not the HTTP cache,
        # is what keeps the pages usable offline, and a release must show at once when online.
        response.headers["Cache-Control"] = "no-cache"
        response.headers.update(self._headers)
        return response


def page_config(cfg: SiteConfig, version: str) -> dict[str, Any]:
    """What the pages read at start (/web/config.json): site, map background, refresh period."""
    web = cfg.web
    return {
        "site": cfg.site,
        "version": __version__,
        "shell": version,
        "tile_url": web.tile_url,
        "tile_attribution": web.tile_attribution,
        "tile_max_zoom": web.tile_max_zoom,
        "center": list(web.center) if web.center else None,
        "zoom": web.zoom,
        "refresh_s": web.refresh_s,
        "stale_after_s": cfg.api.stale_after_s,
    }


def mount_web(app: FastAPI, cfg: SiteConfig, *, static: Path = STATIC) -> None:
    """Serve the pages under /web/ (and /operator, /driver as short links) unless `web.enabled` is off."""
    web = cfg.web
    if not web.enabled:
        return
    if not (static / SW_TEMPLATE).is_file():
        raise RuntimeError(
            f"web pages not found in {static}; reinstall cityeye (the package data 'static/**/*' is missing)"
        )
    version = shell_version(static)
    shell = [f"{PREFIX}/{rel}" for rel in shell_files(static)]
    sw_source = (
        (static / SW_TEMPLATE)
        .read_text(encoding="utf-8")
        .replace("__SHELL_VERSION__", version)
        .replace("__SHELL_FILES__", json.dumps(shell))
    )
    headers = {
        "Content-Security-Policy": content_security_policy(web),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Permissions-Policy": "geolocation=(self), camera=(), microphone=()",
    }
    config = page_config(cfg, version)

    async def config_json() -> JSONResponse:
        return JSONResponse(config, headers={"Cache-Control": "no-cache"})

    async def service_worker() -> Response:
        return Response(
            sw_source,
            media_type="text/javascript",
            headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/", **headers},
        )

    def short_link(page: str) -> Any:
        async def redirect(request: Request) -> RedirectResponse:
            query = request.url.query
            return RedirectResponse(f"{PREFIX}/{page}" + (f"?{query}" if query else ""), status_code=307)

        return redirect

    app.add_api_route(f"{PREFIX}/config.json", config_json, methods=["GET"], include_in_schema=False)
    app.add_api_route(f"{PREFIX}/{SW_TEMPLATE}", service_worker, methods=["GET"], include_in_schema=False)
    for name, page in PAGES.items():
        app.add_api_route(f"/{name}", short_link(page), methods=["GET"], include_in_schema=False)
    app.mount(PREFIX, _PageFiles(directory=static, headers=headers), name="web")
