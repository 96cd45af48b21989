// Driver page: free parking near a point, nearest first, with how old each figure is.
//
// The API answers per zone (a marked bay, or an area with a capacity); a driver thinks in lots.
// Zones with room near the point (nearby, nearest first) say which lots to offer and how far the
// nearest free bay of each is; the lot's free/total comes from /v1/parking/lots, which counts a bay
// seen by two cameras once. With a vehicle filter the lot totals would mix vehicle types, so the
// entry then sums only the matching zones and shows no total.

/* global L */

import { ApiError, PATHS, fetchConfig, getJson, parseTime } from "./api.js";
import { h, setStatus, startPage } from "./common.js";
import { formatAgo, formatDistance, formatNumber, formatTime, onLangChange, t, tn } from "./i18n.js";
import { createMap, meIcon, numberedIcon } from "./mapview.js";

const MAX_ZONES = 200; // the API's limit per request: the nearest 200 zones with room
const SHOWN = 20;

const state = { point: null, results: [], cachedAt: null, timer: null, abort: null, error: null, searched: false };
let cfg, map, meMarker, resultLayer;
const els = {};

async function main() {
  startPage();
  for (const id of ["locate", "radius", "vehicle", "coords", "lat", "lon", "status", "results", "offline", "map"]) {
    els[id] = document.getElementById(id);
  }
  try {
    cfg = await fetchConfig();
  } catch (err) {
    setStatus(els.status, t("error.load", { what: "config", msg: message(err) }), { error: true });
    return;
  }
  map = createMap(els.map, cfg, { label: t("driver.map") });
  resultLayer = L.layerGroup().addTo(map);
  map.on("click", (e) => setPoint(e.latlng.lat, e.latlng.lng));

  els.locate.addEventListener("click", locate);
  els.radius.addEventListener("change", () => search());
  els.vehicle.addEventListener("change", () => search());
  els.coords.addEventListener("submit", (e) => {
    e.preventDefault();
    const lat = Number(els.lat.value.replace(",", "."));
    const lon = Number(els.lon.value.replace(",", "."));
    if (!els.lat.value || !els.lon.value || !(Math.abs(lat) <= 90) || !(Math.abs(lon) <= 180)) {
      setStatus(els.status, t("driver.bad_coords"), { error: true });
      els.lat.focus();
      return;
    }
    setPoint(lat, lon);
  });
  onLangChange(render);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && state.point) search();
  });

  const q = new URLSearchParams(location.search);
  const lat = Number(q.get("lat")), lon = Number(q.get("lon"));
  if (q.has("radius_m") && [...els.radius.options].some((o) => o.value === q.get("radius_m"))) {
    els.radius.value = q.get("radius_m");
  }
  if (q.has("lat") && q.has("lon") && Math.abs(lat) <= 90 && Math.abs(lon) <= 180) {
    setPoint(lat, lon);
  } else {
    await initialView();
    setStatus(els.status, t("driver.choose"));
  }
}

/** Before the driver says where: the configured centre, else the zones the city has. */
async function initialView() {
  if (cfg.center) {
    map.setView(cfg.center, cfg.zoom);
    return;
  }
  try {
    // Lots, not every zone: a phone should not download a city's 10,000 zones to frame a map.
    const body = await getJson(PATHS.lots);
    const pts = (body.lots ?? []).filter((l) => l.lat != null && l.lon != null).map((l) => [l.lat, l.lon]);
    if (pts.length) {
      map.fitBounds(L.latLngBounds(pts), { maxZoom: cfg.zoom, padding: [20, 20] });
      return;
    }
  } catch { /* fall through to the country view */ }
  map.setView([16, 107], 5);
}

function locate() {
  if (!("geolocation" in navigator)) {
    setStatus(els.status, t("driver.geo.unsupported"), { error: true });
    return;
  }
  setStatus(els.status, t("driver.locating"));
  els.locate.disabled = true;
  navigator.geolocation.getCurrentPosition(
    (pos) => {
      els.locate.disabled = false;
      setPoint(pos.coords.latitude, pos.coords.longitude);
    },
    (err) => {
      els.locate.disabled = false;
      const key = err.code === err.PERMISSION_DENIED ? "driver.geo.denied" : "driver.geo.unavailable";
      setStatus(els.status, t(key), { error: true });
    },
    { enableHighAccuracy: true, timeout: 15_000, maximumAge: 60_000 },
  );
}

function setPoint(lat, lon) {
  state.point = { lat, lon };
  els.lat.value = lat.toFixed(6);
  els.lon.value = lon.toFixed(6);
  if (!meMarker) {
    meMarker = L.marker([lat, lon], { icon: meIcon(), keyboard: false, zIndexOffset: 1000, title: t("driver.here") }).addTo(map);
  } else {
    meMarker.setLatLng([lat, lon]);
  }
  const q = new URLSearchParams(location.search);
  q.set("lat", lat.toFixed(6));
  q.set("lon", lon.toFixed(6));
  history.replaceState(null, "", `${location.pathname}?${q}`);
  search({ fit: true });
}

async function search({ fit = false } = {}) {
  if (!state.point) return;
  clearTimeout(state.timer);
  state.abort?.abort();
  const abort = (state.abort = new AbortController());
  const vehicle = els.vehicle.value || undefined;
  const params = {
    lat: state.point.lat.toFixed(6),
    lon: state.point.lon.toFixed(6),
    radius_m: els.radius.value,
    min_free: 1,
    limit: MAX_ZONES,
    vehicle,
  };
  try {
    const [near, lots] = await Promise.all([
      getJson(PATHS.nearby, params, { signal: abort.signal }),
      vehicle ? null : getJson(PATHS.lots, {}, { signal: abort.signal }).catch((err) => {
        if (err.name === "AbortError") throw err;
        return null; // the entries then sum their nearby zones
      }),
    ]);
    state.results = groupByLot(near.results, lots ? new Map(lots.lots.map((l) => [l.id, l])) : null);
    state.cachedAt = near.cachedAt ?? null;
    state.error = null;
  } catch (err) {
    if (err.name === "AbortError") return;
    state.error = err;
  } finally {
    if (state.abort === abort) {
      state.timer = setTimeout(() => search(), cfg.refresh_s * 1000);
    }
  }
  state.searched = true;
  render();
  if (fit) fitToResults();
}

/** Nearby zones (nearest first) -> one entry per lot, placed at its nearest free zone. */
export function groupByLot(zones, lots) {
  const groups = new Map();
  for (const z of zones) {
    if (z.lat == null || z.lon == null || z.free <= 0) continue;
    const key = z.lot ? `${z.site}:${z.lot}` : `zone:${z.id}`;
    let g = groups.get(key);
    if (!g) {
      g = {
        key, lot: z.lot, name: z.lot || z.name || z.zone_id, bays: new Map(), free: 0, total: null,
        distance: z.distance_m, lat: z.lat, lon: z.lon, updated: null, stale: false, vehicles: new Set(),
      };
      groups.set(key, g);
    }
    const bay = `${z.lot}:${z.zone_id}`; // one bay seen by two cameras is one bay
    if (!g.bays.has(bay)) {
      g.bays.set(bay, z);
      g.free += z.free;
      if (!z.lot) g.total = z.total;
    }
    g.stale ||= z.stale;
    g.vehicles.add(z.vehicle ?? "any");
    const updated = parseTime(z.updated_at);
    if (updated && (!g.updated || updated < g.updated)) g.updated = updated; // the oldest figure shown
  }
  for (const g of groups.values()) {
    const lot = g.lot && lots?.get(g.key);
    if (lot) {
      g.free = lot.free;
      g.total = lot.total;
      g.stale ||= lot.stale;
    }
  }
  return [...groups.values()].filter((g) => g.free > 0).sort((a, b) => a.distance - b.distance);
}

function render() {
  const shown = state.results.slice(0, SHOWN);
  els.offline.hidden = !state.cachedAt;
  if (state.cachedAt) els.offline.textContent = t("offline.cached", { time: formatTime(state.cachedAt) });
  if (state.error) {
    const msg = message(state.error);
    setStatus(els.status, t("error.load", { what: t("driver.results").toLowerCase(), msg }), { error: true });
  } else if (!state.point) {
    setStatus(els.status, t("driver.choose"));
  } else if (state.searched && !shown.length) {
    setStatus(els.status, t("driver.none", { r: formatDistance(Number(els.radius.value)) }));
  } else if (state.searched) {
    const where = `${formatNumber(state.point.lat, { maximumFractionDigits: 4 })}, ${formatNumber(state.point.lon, { maximumFractionDigits: 4 })}`;
    setStatus(els.status, tn("driver.found", shown.length, { where }));
  }
  if (state.error && state.results.length) return; // keep the last good list on screen
  els.results.replaceChildren(...shown.map((g, i) => resultItem(g, i + 1)));
  resultLayer.clearLayers();
  shown.forEach((g, i) => {
    const m = L.marker([g.lat, g.lon], { icon: numberedIcon(i + 1, g.stale), title: `${i + 1}. ${g.name}`, alt: g.name });
    // An element, not a string: Leaflet puts strings in as HTML, and names come from site configs.
    m.bindTooltip(h("span", {}, `${i + 1}. ${g.name}: ${t("driver.free", { free: formatNumber(g.free) })}`));
    m.on("click", () => document.getElementById(`result-${i + 1}`)?.focus());
    resultLayer.addLayer(m);
  });
}

function resultItem(g, n) {
  const ago = g.updated ? formatAgo(g.updated) : "?";
  const fresh = g.stale
    ? h("span", { class: "warn" }, t("freshness.stale", { ago }))
    : h("span", {}, t("freshness.ago", { ago }));
  return h(
    "li",
    { id: `result-${n}`, tabindex: "-1", class: g.stale ? "stale" : null, dataset: { lot: g.lot ?? "" } },
    h("div", { class: "name" }, g.name, onlyFor(g)),
    h("div", { class: "free" }, t("driver.free", { free: formatNumber(g.free) }),
      g.total != null ? [" ", h("span", { class: "muted small" }, t("driver.of", { total: formatNumber(g.total) }))] : null),
    h("div", { class: "meta" }, t("driver.away", { d: formatDistance(g.distance) }), " · ", fresh,
      g.updated ? h("time", { datetime: g.updated.toISOString(), class: "visually-hidden" }, formatTime(g.updated)) : null),
    h("div", { class: "actions" }, h("button", { type: "button", onclick: () => showOnMap(g, n) }, t("driver.show"), h("span", { class: "visually-hidden" }, `: ${g.name}`))),
  );
}

/** "motorbikes only" when every free place offered is for one vehicle type (say so before a car drives there). */
function onlyFor(g) {
  const [v] = g.vehicles;
  if (g.vehicles.size !== 1 || v === "any") return null;
  return [" ", h("span", { class: "tag" }, t(`driver.only.${v}`))];
}

function showOnMap(g, n) {
  map.setView([g.lat, g.lon], Math.max(map.getZoom(), 17));
  resultLayer.getLayers()[n - 1]?.openTooltip();
  els.map.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

function fitToResults() {
  const pts = [[state.point.lat, state.point.lon], ...state.results.slice(0, SHOWN).map((g) => [g.lat, g.lon])];
  if (pts.length === 1) map.setView(pts[0], cfg.zoom);
  else map.fitBounds(L.latLngBounds(pts), { padding: [30, 30], maxZoom: 18 });
}

function message(err) {
  if (err instanceof ApiError && err.offline) return t("error.network");
  return err.message || String(err);
}

main();
