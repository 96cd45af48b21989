"""Settings of the operator and driver pages (the `web:` section of a site configuration).

The pages must work in a control room cut off from the internet, so the background map is off
unless a site names a tile server it runs or is allowed to use; zones are then drawn on a plain
lon/lat grid.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator


class WebConfig(BaseModel):
    """What the pages need to know that the API's data does not tell them."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Serve the operator and driver pages under /web/.")
    tile_url: str | None = Field(
        default=None,
        description="XYZ raster tile URL template with {z}, {x} and {y} (e.g. a city's own tile server); "
        "off by default so that the pages need no internet: zones are then drawn on a lon/lat grid.",
    )
    tile_attribution: str = Field(
        default="", max_length=300, description="Attribution shown under the map when tile_url is set."
    )
    tile_max_zoom: int = Field(default=19, ge=1, le=24, description="Highest zoom level the tile server has.")
    center: tuple[float, float] | None = Field(
        default=None,
        description="[lat, lon] the driver page starts from before the driver gives a location; "
        "default: the middle of the known zones.",
    )
    zoom: int = Field(default=16, ge=1, le=22, description="Initial zoom of the driver map around center.")
    refresh_s: float = Field(
        default=30.0,
        ge=2,
        le=3600,
        description="Seconds between refreshes of the driver list, and of the operator page when its live "
        "channel is down.",
    )

    @field_validator("tile_url")
    @classmethod
    def _tile_template(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"tile_url {v!r} must be an http(s) URL template, e.g. https://tiles.example/{{z}}/{{x}}/{{y}}.png"
            )
        missing = [p for p in ("{z}", "{x}", "{y}") if p not in v]
        if missing:
            raise ValueError(
                f"tile_url {v!r} lacks {', '.join(missing)}; an XYZ template needs {{z}}, {{x}} and {{y}}"
            )
        return v

    @field_validator("center")
    @classmethod
    def _center_range(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not (-90 <= v[0] <= 90 and -180 <= v[1] <= 180):
            raise ValueError(f"center {list(v)} is not [lat, lon] in degrees (lat -90..90, lon -180..180)")
        return v

    @property
    def tile_origin(self) -> str | None:
        """Origin of the tile server, for the pages' Content-Security-Policy (subdomain {s} as a wildcard)."""
        if self.tile_url is None:
            return None
        parts = urlsplit(self.tile_url)
        host = parts.netloc.replace("{s}", "*")
        return f"{parts.scheme}://{host}"
