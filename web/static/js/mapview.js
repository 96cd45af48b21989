// Leaflet set-up shared by both pages. Without a configured tile server the background is a
// lon/lat grid with a scale bar, so the map says where things are relative to each other even
// with no internet; a site that runs its own tiles names them in `web.tile_url`.

/* global L */

const GRID_STEPS = [10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005, 0.0002, 0.0001];

export function createMap(el, cfg, { label } = {}) {
  const map = L.map(el, {
    zoomSnap: 0.5,
    maxZoom: cfg.tile_url ? cfg.tile_max_zoom : 21,
    worldCopyJump: false,
    keyboard: true,
  });
  if (cfg.tile_url) {
    L.tileLayer(cfg.tile_url, { maxZoom: cfg.tile_max_zoom, attribution: cfg.tile_attribution || "" }).addTo(map);
  } else {
    graticule().addTo(map);
  }
  L.control.scale({ imperial: false }).addTo(map);
  // Leaflet measures its box once; the grid layouts resize it (fonts, panels, rotation of a phone).
  new ResizeObserver(() => map.invalidateSize()).observe(el);
  if (label) el.setAttribute("aria-label", label);
  map.attributionControl.setPrefix(false);
  return map;
}

/** Lon/lat lines at a round spacing that gives a handful of lines across the view. */
function graticule() {
  const group = L.layerGroup();
  const style = { color: "#8c959f", weight: 1, opacity: 0.6, interactive: false };
  let map = null;
  const redraw = () => {
    group.clearLayers();
    const b = map.getBounds();
    const span = Math.max(b.getEast() - b.getWest(), b.getNorth() - b.getSouth());
    const step = GRID_STEPS.find((s) => span / s >= 4) ?? GRID_STEPS[GRID_STEPS.length - 1];
    const south = Math.max(b.getSouth(), -85), north = Math.min(b.getNorth(), 85);
    for (let x = Math.floor(b.getWest() / step) * step; x <= b.getEast(); x += step) {
      group.addLayer(L.polyline([[south, x], [north, x]], style));
    }
    for (let y = Math.floor(south / step) * step; y <= north; y += step) {
      group.addLayer(L.polyline([[y, b.getWest()], [y, b.getEast()]], style));
    }
  };
  group.on("add", (e) => { map = e.target._map; map.on("moveend resize", redraw); if (map._loaded) redraw(); else map.whenReady(redraw); });
  group.on("remove", () => { map?.off("moveend resize", redraw); map = null; });
  return group;
}

export const STATE_COLOURS = { free: "#1a7f37", some: "#9a6700", full: "#cf222e", stale: "#57606a" };

export function zoneStyle(state, selected = false) {
  const c = STATE_COLOURS[state] ?? STATE_COLOURS.stale;
  return {
    color: selected ? "#bf3989" : c,
    weight: selected ? 4 : 2,
    fillColor: c,
    fillOpacity: state === "stale" ? 0.25 : 0.55,
    dashArray: state === "stale" ? "4 4" : null,
  };
}

/** A number in a circle, for list <-> map correspondence on the driver page. */
export function numberedIcon(n, stale) {
  return L.divIcon({
    className: "",
    html: `<span class="pin${stale ? " stale" : ""}">${n}</span>`,
    iconSize: [28, 28],
    iconAnchor: [14, 14],
  });
}

export function meIcon() {
  return L.divIcon({ className: "", html: '<span class="me"></span>', iconSize: [18, 18], iconAnchor: [9, 9] });
}
