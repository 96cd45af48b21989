// Operator dashboard: zones on a map coloured by occupancy (click for history), lots, cameras and
// traffic counts, kept current by the API's live channel without reloading.
//
// Live events carry the new state of one zone, lot or camera and are applied as they come; every
// (re)connection re-reads the whole picture once, so an event missed while the stream was down
// cannot leave the screen wrong. While the stream is down the page polls every refresh_s.

/* global L, uPlot */

import { ApiError, PATHS, apiKey, download, fetchConfig, getJson, imageUrl, occupancyClass, parseTime, url, zonePath } from "./api.js";
import { h, setStatus, startPage } from "./common.js";
import { formatAgo, formatDuration, formatNumber, formatTime, lang, onLangChange, t, tn } from "./i18n.js";
import { createMap, zoneStyle } from "./mapview.js";

const LIVE_MIN_GAP_MS = 1000;
const RENDER_GAP_MS = 250;
const SLOW_REFRESH_MS = 60_000; // history and traffic: per-minute figures
const TICK_MS = 5_000; // relative times and ageing figures
const TRAFFIC_GAP_MS = 3_000; // live traffic rows come per line, class, direction and minute: batch them
const MAX_LISTED_ZONES = 300;
const CANVAS_ABOVE = 3000; // SVG keeps each zone a DOM node (focus, tests); canvas scales to city size
const RANGES = { "1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600, "7d": 7 * 86400 };
const HISTORY_BUCKET = { "1h": "1m", "6h": "5m", "24h": "15m", "7d": "1h" };

const els = {};
let cfg, map, zoneLayer;
const zones = new Map(); // id -> zone as the API gives it (zones.geojson properties, live `zone` events)
const layers = new Map(); // id -> Leaflet layer
const geomKeys = new Map(); // id -> the geometry its layer was drawn from
const drawnStates = new Map(); // id -> the state its mark shows
const lots = new Map(); // '<site>:<lot>' -> /v1/parking/lots entry
let renderTimer = null;
let started = false;
let selected = null;
let lotFilter = null;
let historyPlot = null, trafficPlot = null;
const live = { es: null, state: "connecting", pollTimer: null, retry: 0, pending: false, lastRun: 0, timer: null };

async function main() {
  startPage();
  for (const id of ["announce", "site", "live", "logout", "login", "login-form", "key", "remember", "login-error", "main", "map",
    "zones-status", "lots", "zone-filter", "zone-count", "zone-list", "detail-empty", "detail-body", "detail-facts",
    "history-range", "history-csv", "history-status", "history-chart", "cams-status", "cams",
    "traffic-line", "traffic-bucket", "traffic-range", "traffic-csv", "traffic-status", "traffic-chart", "traffic-table"]) {
    els[id] = document.getElementById(id);
  }
  try {
    cfg = await fetchConfig();
  } catch (err) {
    setLive("offline");
    document.body.prepend(h("p", { class: "status error", role: "alert" }, t("error.load", { what: "config", msg: err.message })));
    return;
  }
  els.site.textContent = `· ${cfg.site}`;
  els["login-form"].addEventListener("submit", onLogin);
  els.logout.addEventListener("click", () => { apiKey.clear(); location.reload(); });
  els["zone-filter"].addEventListener("input", () => { lotFilter = null; renderLists(); });
  els["history-range"].addEventListener("change", loadHistory);
  els["history-csv"].addEventListener("click", () => exportHistory().catch(showError(els["history-status"])));
  for (const id of ["traffic-line", "traffic-bucket", "traffic-range"]) {
    els[id].addEventListener("change", () => (id === "traffic-line" ? renderTraffic() : loadTraffic()));
  }
  els["traffic-csv"].addEventListener("click", () => exportTraffic().catch(showError(els["traffic-status"])));
  onLangChange(() => { renderAll(); setLive(live.state); });
  new ResizeObserver(() => resizeCharts()).observe(els.main);
  await start();
}

/** Operator routes need the operator role; a refusal shows the sign-in form instead of the dashboard. */
async function start() {
  try {
    await loadCameras();
  } catch (err) {
    if (isRefusal(err)) {
      showLogin(apiKey.get() ? t("login.bad", { status: err.status }) : "");
      return;
    }
    // Server unreachable or failing: show what can be shown; polling and the stream retry.
    setStatus(els["cams-status"], t("error.load", { what: t("cams.title").toLowerCase(), msg: errText(err) }), { error: true });
  }
  els.login.hidden = true;
  els.main.hidden = false;
  els.logout.hidden = !apiKey.get();
  if (!map) {
    map = createMap(els.map, cfg, { label: t("map.label") });
    map.setView(cfg.center ?? [16, 107], cfg.center ? cfg.zoom : 5);
  }
  if (started) { // signed in again after a refusal: re-read, and reopen the stream with the new key
    refresh();
    loadTraffic();
    connectLive();
    return;
  }
  started = true;
  await Promise.allSettled([loadZones({ fit: true }), loadLots(), loadTraffic()]);
  connectLive();
  setInterval(() => { loadTraffic(); if (selected) loadHistory(); }, SLOW_REFRESH_MS);
  // "2 min ago" must keep counting, and figures age into stale, with no message to say so.
  setInterval(() => {
    let changed = false;
    for (const id of zones.keys()) changed = styleZone(id, { force: false }) || changed;
    renderCameras();
    renderDetail();
    if (changed) scheduleRender(null);
  }, TICK_MS);
}

function isRefusal(err) {
  return err instanceof ApiError && (err.status === 401 || err.status === 403);
}

/** A key refused mid-session (revoked, expired): stop the stream and polling and ask again. */
function showLogin(error) {
  live.es?.close();
  live.es = null;
  stopPolling();
  els.main.hidden = true;
  els.login.hidden = false;
  els["login-error"].textContent = error;
  setLive("offline");
  els.key.focus();
}

async function onLogin(e) {
  e.preventDefault();
  const key = els.key.value.trim();
  if (!key) return;
  apiKey.set(key, els.remember.checked);
  els.key.value = "";
  await start();
}

// -- zones and lots --------------------------------------------------------------------------

async function loadZones({ fit = false } = {}) {
  let fc;
  try {
    fc = await getJson(PATHS.zonesGeojson);
  } catch (err) {
    setStatus(els["zones-status"], t("error.load", { what: t("map.title").toLowerCase(), msg: errText(err) }), { error: true });
    return;
  }
  setStatus(els["zones-status"], "");
  ensureZoneLayer(fc.features?.length ?? 0);
  const seen = new Set();
  for (const f of fc.features ?? []) {
    const p = { ...f.properties, id: String(f.id ?? f.properties.id) };
    seen.add(p.id);
    upsertZone(p, f.geometry, { render: false });
  }
  for (const id of [...zones.keys()]) if (!seen.has(id)) removeZone(id, { render: false });
  if (fit && zoneLayer.getLayers().length) map.fitBounds(zoneLayer.getBounds(), { padding: [40, 40], maxZoom: 19 });
  renderLists();
  if (selected) renderDetail();
}

function ensureZoneLayer(n) {
  if (zoneLayer) return;
  zoneLayer = L.featureGroup([], { renderer: n > CANVAS_ABOVE ? L.canvas() : L.svg() }).addTo(map);
}

/**
 * Whether `next` may replace `cur`. A full re-read and live events race (the reply to a request
 * sent before an event can arrive after it), so a state never replaces a strictly newer one.
 */
function newer(next, cur, fields) {
  if (!cur) return true;
  const when = (o) => Math.max(...fields.map((f) => (o[f] ? Date.parse(o[f]) : 0)));
  return when(next) >= when(cur);
}
const ZONE_TIME = ["updated_at"];
const CAMERA_TIME = ["status_at", "last_heard_at", "health_at", "snapshot_at"];

/** One zone's new state, from the full load or a live `zone` event; its map mark is made once. */
function upsertZone(p, geometry, { render = true } = {}) {
  const id = p.id;
  ensureZoneLayer(0);
  if (!newer(p, zones.get(id), ZONE_TIME)) return;
  zones.set(id, p);
  geometry ??= p.lat != null && p.lon != null ? { type: "Point", coordinates: [p.lon, p.lat] } : null;
  const key = geometry ? JSON.stringify(geometry) : "";
  if (geomKeys.get(id) !== key) {
    layers.get(id)?.remove();
    layers.delete(id);
    geomKeys.set(id, key);
    const layer = geometry && L.geoJSON({ type: "Feature", geometry, properties: {} }, {
      pointToLayer: (_f, latlng) => L.circleMarker(latlng, { radius: 9, renderer: zoneLayer.options.renderer }),
      style: () => ({ renderer: zoneLayer.options.renderer }),
    }).getLayers()[0];
    if (layer) {
      layer.on("click", () => selectZone(id));
      layer.bindTooltip(() => zoneTooltip(zones.get(id)));
      zoneLayer.addLayer(layer);
      layers.set(id, layer);
    }
  }
  styleZone(id);
  if (render) scheduleRender(id);
}

/** A zone gone from the site: forget it (the page runs for days in a control room). */
function removeZone(id, { render = true } = {}) {
  zones.delete(id);
  geomKeys.delete(id);
  drawnStates.delete(id);
  layers.get(id)?.remove();
  layers.delete(id);
  if (selected === id) selected = null;
  if (render) scheduleRender(null);
}

/**
 * A zone is stale when the API says so, when its camera is offline now, or when its last update
 * has grown older than api.stale_after_s: the live stream announces a camera going offline, not
 * each of its zones, and no message marks a figure ageing, so the page applies the API's rule
 * (the older of frame and arrival time) itself between events.
 */
function zoneState(z, now = Date.now()) {
  const cam = cameras.get(`${z.site}:${z.camera}`);
  const last = Math.min(Date.parse(z.observed_at ?? z.updated_at), Date.parse(z.updated_at ?? z.observed_at));
  const aged = Number.isFinite(last) && cfg?.stale_after_s != null && now - last > cfg.stale_after_s * 1000;
  return occupancyClass({ ...z, stale: z.stale || cam?.online === false || aged });
}

/** Restyle one zone's mark; true when its state changed. Unchanged marks are left alone (10,000 per tick). */
function styleZone(id, { force = true } = {}) {
  const z = zones.get(id), layer = layers.get(id);
  if (!z || !layer) return false;
  const st = zoneState(z);
  if (!force && drawnStates.get(id) === st) return false;
  drawnStates.set(id, st);
  layer.setStyle(zoneStyle(st, id === selected));
  const el = layer.getElement?.();
  if (el) {
    el.setAttribute("class", `leaflet-interactive zone zone--${st}${id === selected ? " zone--selected" : ""}`);
    el.dataset.zoneId = id;
    el.dataset.state = st;
  }
  if (id === selected) layer.bringToFront?.();
  return true;
}

function zoneTooltip(z) {
  if (!z) return h("span");
  const name = z.name || z.zone_id || z.id;
  const stale = zoneState(z) === "stale" ? ` (${t("legend.stale").toLowerCase()})` : "";
  // An element, not a string: Leaflet puts strings in as HTML, and names come from zone files.
  return h("span", {}, `${name}: ${formatNumber(z.free)} / ${formatNumber(z.total)} ${t("zone.free").toLowerCase()}${stale}`);
}

/** Live events come in bursts (one per zone of a snapshot): lists are redrawn at most every RENDER_GAP_MS. */
function scheduleRender(id) {
  if (id && id === selected) renderDetail();
  if (renderTimer) return;
  renderTimer = setTimeout(() => { renderTimer = null; renderLists(); }, RENDER_GAP_MS);
}

async function loadLots() {
  try {
    const body = await getJson(PATHS.lots);
    const seen = new Set();
    for (const l of body.lots ?? []) {
      seen.add(l.id);
      if (newer(l, lots.get(l.id), ZONE_TIME)) lots.set(l.id, l);
    }
    for (const id of [...lots.keys()]) if (!seen.has(id)) lots.delete(id);
  } catch (err) {
    setStatus(els["zones-status"], t("error.load", { what: t("lots.title").toLowerCase(), msg: errText(err) }), { error: true });
  }
  renderLists();
}

/** Redraws replace the list buttons; keep the keyboard user's place (live updates come every second). */
function keepFocus(container, attr, draw) {
  const active = document.activeElement;
  const key = container.contains(active) ? active.getAttribute(attr) : null;
  draw();
  if (key !== null) container.querySelector(`[${attr}="${CSS.escape(key)}"]`)?.focus();
}

function renderLists() {
  keepFocus(els.lots, "data-lot-key", renderLots);
  keepFocus(els["zone-list"], "data-zone-id", renderZoneList);
}

function renderLots() {
  // Lots as the API sums them (a bay seen by two cameras counts once); zones without a lot in one row.
  // A lot is out of date when every zone of it is (the page's own rule between events, see zoneState).
  const fresh = new Map();
  for (const z of zones.values()) {
    const key = z.lot ? `${z.site}:${z.lot}` : "";
    fresh.set(key, (fresh.get(key) ?? false) || zoneState(z) !== "stale");
  }
  const rows = [...lots.values()].sort((a, b) => String(a.lot).localeCompare(String(b.lot), undefined, { numeric: true }));
  const loose = [...zones.values()].filter((z) => !z.lot);
  if (loose.length) {
    rows.push({ id: "", lot: null, free: loose.reduce((a, z) => a + z.free, 0), total: loose.reduce((a, z) => a + z.total, 0) });
  }
  const tbody = els.lots.tBodies[0];
  tbody.replaceChildren(...rows.map((l) => {
    const st = occupancyClass({ ...l, stale: l.stale || fresh.get(l.id) === false });
    const key = l.lot ?? "";
    return h("tr", { dataset: { lot: key } },
      h("th", { scope: "row" }, h("button", { type: "button", "aria-pressed": String(lotFilter === key), "data-lot-key": key, onclick: () => filterLot(key) }, l.lot ?? t("lots.nolot"))),
      h("td", { class: "num" }, `${formatNumber(l.free)} / ${formatNumber(l.total)}`),
      h("td", {}, h("span", { class: `badge ${st}` }, t(`legend.${st}`))));
  }));
  if (!rows.length) tbody.replaceChildren(h("tr", {}, h("td", { colspan: "3", class: "muted" }, t("lots.none"))));
}

function renderZoneList() {
  const q = els["zone-filter"].value.trim().toLowerCase();
  const match = [...zones.values()].filter((z) => {
    if (lotFilter !== null && (z.lot ?? "") !== lotFilter) return false;
    if (!q) return true;
    return [z.id, z.name, z.lot, z.camera].some((v) => v && String(v).toLowerCase().includes(q));
  });
  match.sort((a, b) => String(a.lot ?? "").localeCompare(String(b.lot ?? "")) || String(a.id).localeCompare(String(b.id), undefined, { numeric: true }));
  els["zone-count"].textContent = tn("zones.count", match.length);
  els["zone-list"].replaceChildren(...match.slice(0, MAX_LISTED_ZONES).map((z) => {
    const st = zoneState(z);
    return h("li", {}, h("button", {
      type: "button", "aria-pressed": String(z.id === selected), dataset: { zoneId: z.id, state: st }, onclick: () => selectZone(z.id),
    }, h("span", {}, z.name || z.zone_id || z.id, z.lot ? h("span", { class: "muted small" }, ` · ${z.lot}`) : null),
    h("span", { class: `badge ${st}` }, `${formatNumber(z.free)}/${formatNumber(z.total)} · ${t(`legend.${st}`)}`)));
  }));
}

function filterLot(lot) {
  lotFilter = lotFilter === lot ? null : lot;
  els["zone-filter"].value = "";
  renderLists();
  if (lotFilter === null) return;
  const b = L.latLngBounds([]);
  for (const [id, z] of zones) if ((z.lot ?? "") === lot && layers.has(id)) b.extend(boundsOf(layers.get(id)));
  if (b.isValid()) map.fitBounds(b, { padding: [30, 30], maxZoom: 19 });
}

function boundsOf(layer) {
  return layer.getBounds ? layer.getBounds() : L.latLngBounds([layer.getLatLng()]);
}

function selectZone(id) {
  const prev = selected;
  selected = id;
  if (prev) styleZone(prev);
  styleZone(id);
  for (const b of els["zone-list"].querySelectorAll("button[data-zone-id]")) b.setAttribute("aria-pressed", String(b.dataset.zoneId === id));
  renderDetail();
  loadHistory();
}

function renderDetail() {
  const z = selected && zones.get(selected);
  els["detail-empty"].hidden = !!z;
  els["detail-body"].hidden = !z;
  if (!z) return;
  const st = zoneState(z);
  const stale = st === "stale";
  const updated = parseTime(z.updated_at);
  const state = z.kind === "space" ? t(z.free > 0 ? "zone.vacant" : "zone.occupied") : t(`legend.${st}`);
  const facts = [
    [t("zone.title"), `${z.name || z.zone_id || z.id}`],
    ["ID", z.id],
    [t("zone.state"), h("span", { class: `badge ${st}`, id: "detail-state", dataset: { state: st } }, state)],
    [t("zone.free"), `${formatNumber(z.free)} / ${formatNumber(z.total)}`],
    [t("zone.camera"), z.camera ?? "–"],
    [t("zone.lot"), z.lot ?? "–"],
    [t("zone.updated"), updated ? `${formatAgo(updated)} (${formatTime(updated)})${stale ? ` — ${t("legend.stale")}` : ""}` : "–"],
  ];
  els["detail-facts"].replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

/** uPlot formats dates in English only: the time axis and legend use the page language instead. */
function timeAxis() {
  return {
    values: (u, splits) => {
      const span = (u.scales.x.max ?? 0) - (u.scales.x.min ?? 0);
      const fmt = new Intl.DateTimeFormat(lang(), span > 2 * 86400
        ? { day: "numeric", month: "numeric" }
        : { hour: "2-digit", minute: "2-digit" });
      return splits.map((v) => fmt.format(new Date(v * 1000)));
    },
  };
}

function timeSeries() {
  return { label: t("chart.time"), value: (_u, v) => (v == null ? "–" : formatTime(new Date(v * 1000))) };
}

/** The chart shows the whole period asked for, not just the stretch that has data. */
function spanSeconds(span) {
  return [Date.parse(span.from) / 1000, Date.parse(span.to) / 1000];
}

function rangeParams(range) {
  const to = new Date();
  const from = new Date(to.getTime() - RANGES[range] * 1000);
  return { from: from.toISOString(), to: to.toISOString() };
}

async function loadHistory() {
  if (!selected) return;
  const id = selected;
  const range = els["history-range"].value;
  const span = rangeParams(range);
  let body;
  try {
    body = await getJson(zonePath(PATHS.history, id), { ...span, bucket: HISTORY_BUCKET[range] }, { auth: true });
  } catch (err) {
    if (isRefusal(err)) { showLogin(t("login.bad", { status: err.status })); return; }
    setStatus(els["history-status"], t("error.load", { what: t("zone.title").toLowerCase(), msg: errText(err) }), { error: true });
    return;
  }
  if (id !== selected) return;
  const points = (body.points ?? body.history ?? []).map((p) => ({
    t: parseTime(p.start ?? p.bucket ?? p.t ?? p.observed_at),
    free: p.free_avg ?? p.free,
    min: p.free_min ?? p.free,
    max: p.free_max ?? p.free,
    total: p.total ?? p.total_max,
  })).filter((p) => p.t);
  setStatus(els["history-status"], points.length ? "" : t("zone.nohistory"));
  historyPlot?.destroy();
  historyPlot = null;
  els["history-chart"].replaceChildren();
  if (!points.length) return;
  const xs = points.map((p) => p.t.getTime() / 1000);
  historyPlot = new uPlot({
    width: chartWidth(els["history-chart"]),
    height: 220,
    series: [
      timeSeries(),
      { label: t("chart.free_avg"), stroke: "#1a7f37", width: 2, fill: "rgba(26,127,55,0.12)", paths: uPlot.paths.stepped({ align: 1 }) },
      { label: t("chart.min"), stroke: "#9a6700", dash: [4, 4] },
      { label: t("chart.max"), stroke: "#0a58ca", dash: [2, 4] },
      { label: t("chart.total"), stroke: "#57606a", width: 1 },
    ],
    axes: [timeAxis(), { label: t("zone.free") }],
    scales: { x: { time: true, range: () => spanSeconds(span) }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
  }, [xs, points.map((p) => p.free), points.map((p) => p.min), points.map((p) => p.max), points.map((p) => p.total)], els["history-chart"]);
}

async function exportHistory() {
  if (!selected) return;
  const range = els["history-range"].value;
  await download(zonePath(PATHS.history, selected), { ...rangeParams(range), bucket: HISTORY_BUCKET[range], format: "csv" },
    `${selected.replace(/[^A-Za-z0-9_.-]+/g, "_")}-history.csv`);
}

// -- cameras -------------------------------------------------------------------------------

const cameras = new Map(); // '<site>:<camera>' -> /v1/cameras entry

async function loadCameras() {
  const body = await getJson(PATHS.cameras, {}, { auth: true });
  const seen = new Set();
  for (const c of body.cameras ?? []) {
    const id = c.id ?? `${c.site}:${c.camera}`;
    seen.add(id);
    if (newer(c, cameras.get(id), CAMERA_TIME)) cameras.set(id, c);
  }
  for (const id of [...cameras.keys()]) {
    if (seen.has(id)) continue;
    cameras.delete(id);
    const s = snapshots.get(id);
    if (s?.url) URL.revokeObjectURL(s.url);
    snapshots.delete(id);
  }
  setStatus(els["cams-status"], "");
  renderCameras();
}

function upsertCamera(c) {
  const id = c.id ?? `${c.site}:${c.camera}`;
  if (!newer(c, cameras.get(id), CAMERA_TIME)) return;
  const was = cameras.get(id)?.online;
  cameras.set(id, c);
  renderCameras();
  if (was !== undefined && was !== c.online) {
    // Screen-reader users hear what sighted operators see turn red.
    els.announce.textContent = t(c.online ? "cams.back_online" : "cams.went_offline", { cam: c.camera });
  }
  if (was !== c.online) { // its zones turn stale (or trusted again) with it
    for (const [zid, z] of zones) if (`${z.site}:${z.camera}` === id) styleZone(zid);
    scheduleRender(selected);
  }
}

/** What the operator must act on: a camera the centre no longer hears is offline whatever it said last. */
function cameraStatus(c) {
  if (c.online === false) return "offline";
  return c.status ?? "unknown";
}

/**
 * Each camera's latest snapshot (edge setting `snapshot:`), fetched with the key as a blob because an
 * <img> cannot send one. Fetched again only when the camera's `snapshot_at` moves on.
 */
const snapshots = new Map(); // camera id -> { at, url, loading }

let camerasQueued = false;
function scheduleRenderCameras() {
  if (camerasQueued) return;
  camerasQueued = true;
  requestAnimationFrame(() => { camerasQueued = false; renderCameras(); });
}

function snapshotImage(c) {
  const id = c.id ?? `${c.site}:${c.camera}`;
  if (!c.snapshot_at) return null;
  let s = snapshots.get(id);
  if (!s || (s.at !== c.snapshot_at && !s.loading)) {
    const old = s;
    s = { at: c.snapshot_at, url: old?.url ?? null, loading: true };
    snapshots.set(id, s);
    imageUrl(zonePath(PATHS.cameraSnapshot, id))
      .then((u) => {
        if (old?.url) URL.revokeObjectURL(old.url);
        s.url = u;
        scheduleRenderCameras();
      })
      .catch(() => { /* the next camera update tries again */ s.at = null; })
      .finally(() => { s.loading = false; });
  }
  if (!s.url) return null;
  const at = parseTime(c.snapshot_at);
  return h("img", {
    src: s.url,
    alt: t("cams.snapshot", { cam: c.camera }),
    title: at ? formatTime(at) : "",
    class: "camera-thumb",
    dataset: { snapshotAt: c.snapshot_at },
  });
}

function renderCameras() {
  const tbody = els.cams.tBodies[0];
  if (!cameras.size) {
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: "7", class: "muted" }, t("cams.none"))));
    return;
  }
  const rows = [...cameras.values()].sort((a, b) => String(a.id).localeCompare(String(b.id), undefined, { numeric: true }));
  tbody.replaceChildren(...rows.map((c) => {
    const status = cameraStatus(c);
    const seen = parseTime(c.last_heard_at ?? c.last_seen_at);
    const hl = c.health ?? {};
    const fps = c.fps ?? hl.fps;
    const reconnects = c.reconnects ?? hl.reconnects;
    const snapshot = snapshotImage(c);
    const known = t(`status.${status}`) !== `status.${status}`;
    return h("tr", { dataset: { camera: c.id ?? `${c.site}:${c.camera}`, status } },
      h("th", { scope: "row" }, c.camera, h("div", { class: "muted small" }, c.site), snapshot),
      h("td", {}, h("span", { class: `badge ${status}` }, known ? t(`status.${status}`) : status)),
      h("td", {}, seen ? h("time", { datetime: seen.toISOString(), title: formatTime(seen) }, formatAgo(seen)) : "–"),
      h("td", { class: "num" }, fps != null ? formatNumber(fps, { maximumFractionDigits: 2 }) : "–"),
      h("td", { class: "num" }, reconnects != null ? formatNumber(reconnects) : "–"),
      h("td", { class: "num" }, formatDuration(c.last_frame_age_s ?? hl.last_frame_age_s)),
      h("td", { class: "small" }, hl.error || c.detail || ""));
  }));
}

// -- traffic -------------------------------------------------------------------------------

let traffic = [];
let trafficSpan = null;

async function loadTraffic() {
  const range = els["traffic-range"].value;
  trafficSpan = rangeParams(range);
  let body;
  try {
    body = await getJson(PATHS.traffic, { ...trafficSpan, bucket: els["traffic-bucket"].value, by: "class,direction" }, { auth: true });
  } catch (err) {
    if (isRefusal(err)) { showLogin(t("login.bad", { status: err.status })); return; }
    setStatus(els["traffic-status"], t("error.load", { what: t("traffic.title").toLowerCase(), msg: errText(err) }), { error: true });
    return;
  }
  traffic = (body.rows ?? []).map((p) => ({
    line: String(p.line_id),
    t: parseTime(p.start),
    direction: p.direction ?? "",
    vclass: p.vehicle_class ?? "",
    count: p.count ?? 0,
  })).filter((p) => p.t);
  const lines = [...new Set(traffic.map((p) => p.line))].sort();
  const keep = els["traffic-line"].value;
  // '<site>:<camera>:<line>' reads better as 'camera · line' when there is one site.
  els["traffic-line"].replaceChildren(...lines.map((l) => new Option(l.split(":").slice(1).join(" · ") || l, l)));
  if (lines.includes(keep)) els["traffic-line"].value = keep;
  els["traffic-line"].disabled = !lines.length;
  els["traffic-csv"].disabled = !lines.length;
  renderTraffic();
}

function renderTraffic() {
  const line = els["traffic-line"].value;
  const pts = traffic.filter((p) => p.line === line);
  trafficPlot?.destroy();
  trafficPlot = null;
  els["traffic-chart"].replaceChildren();
  els["traffic-table"].tHead.replaceChildren();
  els["traffic-table"].tBodies[0].replaceChildren();
  els["traffic-table"].hidden = !pts.length;
  if (!traffic.length) { setStatus(els["traffic-status"], t("traffic.none")); return; }
  if (!pts.length) { setStatus(els["traffic-status"], t("traffic.none")); return; }
  setStatus(els["traffic-status"], "");
  const series = [...new Set(pts.map((p) => `${p.direction}\u0000${p.vclass}`))].sort();
  const times = [...new Set(pts.map((p) => p.t.getTime()))].sort((a, b) => a - b);
  const index = new Map(times.map((v, i) => [v, i]));
  const data = [times.map((v) => v / 1000), ...series.map(() => times.map(() => 0))];
  const totals = new Map(series.map((s) => [s, 0]));
  for (const p of pts) {
    const s = `${p.direction}\u0000${p.vclass}`;
    data[1 + series.indexOf(s)][index.get(p.t.getTime())] += p.count;
    totals.set(s, totals.get(s) + p.count);
  }
  const palette = ["#0a58ca", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#1b7c83", "#57606a"];
  const className = (c) => (t(`class.${c}`) !== `class.${c}` ? t(`class.${c}`) : c);
  const name = (s) => { const [d, c] = s.split("\u0000"); return `${d} · ${className(c)}`; };
  trafficPlot = new uPlot({
    width: chartWidth(els["traffic-chart"]),
    height: 240,
    series: [timeSeries(), ...series.map((s, i) => ({ label: name(s), stroke: palette[i % palette.length], width: 2, points: { show: times.length < 60 } }))],
    axes: [timeAxis(), {}],
    scales: { x: { time: true, range: () => spanSeconds(trafficSpan) }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
  }, data, els["traffic-chart"]);
  // The same figures as a table: readable without the chart (screen readers, printing).
  const directions = [...new Set(pts.map((p) => p.direction))].sort();
  const classes = [...new Set(pts.map((p) => p.vclass))].sort();
  els["traffic-table"].tHead.replaceChildren(h("tr", {}, h("th", { scope: "col" }, t("traffic.class")),
    ...directions.map((d) => h("th", { scope: "col", class: "num" }, d)), h("th", { scope: "col", class: "num" }, t("traffic.total"))));
  els["traffic-table"].tBodies[0].replaceChildren(...classes.map((c) => {
    const cells = directions.map((d) => totals.get(`${d}\u0000${c}`) ?? 0);
    return h("tr", { dataset: { vclass: c } }, h("th", { scope: "row" }, className(c)), ...cells.map((v) => h("td", { class: "num" }, formatNumber(v))),
      h("td", { class: "num" }, formatNumber(cells.reduce((a, b) => a + b, 0))));
  }));
}

async function exportTraffic() {
  const range = els["traffic-range"].value;
  const line = els["traffic-line"].value;
  await download(PATHS.traffic, { ...rangeParams(range), bucket: els["traffic-bucket"].value, by: "class,direction", line_id: line || undefined, format: "csv" },
    `traffic-${(line || "all").replace(/[^A-Za-z0-9_.-]+/g, "_")}.csv`);
}

let trafficTimer = null;

function scheduleTraffic() {
  if (trafficTimer) return;
  trafficTimer = setTimeout(() => { trafficTimer = null; loadTraffic(); }, TRAFFIC_GAP_MS);
}

// -- live updates --------------------------------------------------------------------------

/**
 * Server-Sent Events (/v1/live): each `zone`, `lot` and `camera` event carries the new state,
 * applied as it comes. On (re)connect everything is re-read once, so nothing missed while the
 * stream was down stays wrong; while it is down the page polls every refresh_s.
 */
function connectLive() {
  if (live.es || !els.login.hidden) return; // no stream while the page asks for a key
  const key = apiKey.get();
  // EventSource cannot send headers: the key goes in the query, as the API documents for browsers.
  const es = new EventSource(url(PATHS.live, { api_key: key || undefined }));
  live.es = es;
  es.addEventListener("open", () => {
    live.retry = 0;
    stopPolling();
    setLive("live");
    refresh();
  });
  const on = (kind, fn) => es.addEventListener(kind, (e) => {
    try { fn(JSON.parse(e.data)); } catch (err) { console.warn(`live ${kind}:`, err); }
  });
  on("zone", (z) => upsertZone(z));
  on("zone_removed", (z) => removeZone(z.id));
  on("lot", (l) => { if (newer(l, lots.get(l.id), ZONE_TIME)) lots.set(l.id, l); scheduleRender(null); });
  on("camera", (c) => upsertCamera(c));
  // Per-minute rows; the page shows 5 min..1 h bins, so it re-reads its view (at most every few s).
  on("traffic", () => scheduleTraffic());
  es.addEventListener("error", () => {
    startPolling();
    if (es.readyState === EventSource.CLOSED) {
      // Refused (e.g. a key revoked) or the server gone for good: try again later, with back-off.
      es.close();
      live.es = null;
      setTimeout(connectLive, Math.min(60_000, 2000 * 2 ** live.retry++));
    } else {
      setLive("connecting"); // EventSource retries by itself (the API asks for 3 s)
    }
  });
}

function startPolling() {
  if (!els.login.hidden) return;
  setLive(navigator.onLine ? "polling" : "offline");
  if (live.pollTimer) return;
  live.pollTimer = setInterval(refresh, cfg.refresh_s * 1000);
}

function stopPolling() {
  clearInterval(live.pollTimer);
  live.pollTimer = null;
}

/** Re-read zones, lots and cameras; calls close together collapse into one per LIVE_MIN_GAP_MS. */
function refresh() {
  if (live.timer) { live.pending = true; return; }
  const wait = Math.max(0, live.lastRun + LIVE_MIN_GAP_MS - Date.now());
  live.timer = setTimeout(async () => {
    live.lastRun = Date.now();
    live.pending = false;
    try {
      await Promise.allSettled([loadZones(), loadLots(), loadCameras().catch((err) => {
        if (isRefusal(err)) showLogin(t("login.bad", { status: err.status }));
        else showError(els["cams-status"])(err);
      })]);
    } finally {
      live.timer = null;
      if (live.pending) refresh();
    }
  }, wait);
}

function setLive(st) {
  live.state = st;
  els.live.dataset.state = st;
  els.live.textContent = st === "polling" ? t("live.polling", { s: formatNumber(cfg?.refresh_s ?? 30) }) : t(`live.${st}`);
}

// -- helpers -------------------------------------------------------------------------------

function renderAll() {
  renderLists();
  renderDetail();
  renderCameras();
  renderTraffic();
  if (selected) loadHistory();
}

function chartWidth(el) {
  return Math.max(240, el.clientWidth || el.parentElement.clientWidth - 24);
}

function resizeCharts() {
  for (const [plot, el] of [[historyPlot, els["history-chart"]], [trafficPlot, els["traffic-chart"]]]) {
    if (plot) plot.setSize({ width: chartWidth(el), height: plot.height });
  }
}

function errText(err) {
  if (err instanceof ApiError && err.offline) return t("error.network");
  return err.message || String(err);
}

function showError(el) {
  return (err) => setStatus(el, errText(err), { error: true });
}

main();
