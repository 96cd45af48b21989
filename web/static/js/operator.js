// Operator dashboard: zones on a map coloured by occupancy (click for history), lots, cameras and
// traffic counts, kept current by the API's live channel without reloading.
//
// The live channel only says *that* something changed; the page then re-reads what it shows
// (at most once per LIVE_MIN_GAP_MS), so one code path draws both the first load and every update,
// and a missed message cannot leave the screen wrong. When the channel is down the page polls.

/* global L, uPlot */

import { ApiError, PATHS, apiKey, download, fetchConfig, getJson, occupancyClass, parseTime, url, zonePath } from "./api.js";
import { h, setStatus, startPage } from "./common.js";
import { formatAgo, formatDuration, formatNumber, formatTime, onLangChange, t } from "./i18n.js";
import { createMap, zoneStyle } from "./mapview.js";

const LIVE_MIN_GAP_MS = 1000;
const MAX_LISTED_ZONES = 300;
const CANVAS_ABOVE = 3000; // SVG keeps each zone a DOM node (focus, tests); canvas scales to city size
const RANGES = { "6h": 6 * 3600, "24h": 24 * 3600, "7d": 7 * 86400 };
const HISTORY_BUCKET = { "6h": "1m", "24h": "15m", "7d": "1h" };

const els = {};
let cfg, map, zoneLayer;
const zones = new Map(); // id -> feature properties
const layers = new Map(); // id -> Leaflet layer
let selected = null;
let lotFilter = null;
let historyPlot = null, trafficPlot = null;
const live = { ws: null, state: "connecting", pollTimer: null, retry: 0, pending: false, lastRun: 0, timer: null };

async function main() {
  startPage();
  for (const id of ["site", "live", "logout", "login", "login-form", "key", "remember", "login-error", "main", "map",
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
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      showLogin(apiKey.get() ? t("login.bad", { status: err.status }) : "");
      return;
    }
    throw err;
  }
  els.login.hidden = true;
  els.main.hidden = false;
  els.logout.hidden = !apiKey.get();
  if (!map) {
    map = createMap(els.map, cfg, { label: t("map.label") });
    map.setView(cfg.center ?? [16, 107], cfg.center ? cfg.zoom : 5);
  }
  await Promise.allSettled([loadZones({ fit: true }), loadTraffic()]);
  connectLive();
}

function showLogin(error) {
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

// -- zones ---------------------------------------------------------------------------------

async function loadZones({ fit = false } = {}) {
  let fc;
  try {
    fc = await getJson(PATHS.zonesGeojson);
  } catch (err) {
    setStatus(els["zones-status"], t("error.load", { what: t("map.title").toLowerCase(), msg: errText(err) }), { error: true });
    return;
  }
  setStatus(els["zones-status"], "");
  const seen = new Set();
  const fresh = [];
  for (const f of fc.features ?? []) {
    const p = { ...f.properties };
    p.id = String(f.id ?? p.id);
    seen.add(p.id);
    const old = zones.get(p.id);
    zones.set(p.id, p);
    if (!layers.has(p.id) || JSON.stringify(old?._geometry) !== JSON.stringify(f.geometry)) {
      fresh.push({ ...f, properties: p });
      p._geometry = f.geometry;
    } else {
      p._geometry = old._geometry;
    }
  }
  for (const id of [...zones.keys()]) {
    if (!seen.has(id)) { // gone from the site: evict, the page runs for days
      zones.delete(id);
      layers.get(id)?.remove();
      layers.delete(id);
      if (selected === id) selected = null;
    }
  }
  if (!zoneLayer) {
    const renderer = zones.size > CANVAS_ABOVE ? L.canvas() : L.svg();
    zoneLayer = L.featureGroup([], { renderer }).addTo(map);
  }
  for (const f of fresh) {
    layers.get(f.properties.id)?.remove();
    const layer = L.geoJSON(f, {
      pointToLayer: (_feat, latlng) => L.circleMarker(latlng, { radius: 9, renderer: zoneLayer.options.renderer }),
      style: () => ({ renderer: zoneLayer.options.renderer }),
    }).getLayers()[0];
    if (!layer) continue;
    const id = f.properties.id;
    layer.on("click", () => selectZone(id));
    layer.bindTooltip(() => zoneTooltip(zones.get(id)));
    zoneLayer.addLayer(layer);
    layers.set(id, layer);
  }
  for (const id of zones.keys()) styleZone(id);
  if (fit && zoneLayer.getLayers().length) map.fitBounds(zoneLayer.getBounds(), { padding: [20, 20], maxZoom: 19 });
  renderLists();
  if (selected) renderDetail();
}

function styleZone(id) {
  const z = zones.get(id), layer = layers.get(id);
  if (!z || !layer) return;
  const st = occupancyClass(z);
  layer.setStyle(zoneStyle(st, id === selected));
  const el = layer.getElement?.();
  if (el) {
    el.setAttribute("class", `leaflet-interactive zone zone--${st}${id === selected ? " zone--selected" : ""}`);
    el.dataset.zoneId = id;
    el.dataset.state = st;
  }
  if (id === selected) layer.bringToFront?.();
}

function zoneTooltip(z) {
  if (!z) return "";
  const name = z.name || z.zone_id || z.id;
  return `${name}: ${formatNumber(z.free)} / ${formatNumber(z.total)} ${t("zone.free").toLowerCase()}${z.stale ? ` (${t("legend.stale").toLowerCase()})` : ""}`;
}

function renderLists() {
  // Lots: sums over their zones, the unassigned ones in one row.
  const lots = new Map();
  for (const z of zones.values()) {
    const key = z.lot ?? "";
    const l = lots.get(key) ?? { lot: z.lot, free: 0, total: 0, stale: 0, n: 0 };
    l.free += z.free; l.total += z.total; l.n += 1; l.stale += z.stale ? 1 : 0;
    lots.set(key, l);
  }
  const rows = [...lots.values()].sort((a, b) => (a.lot ?? "\uffff").localeCompare(b.lot ?? "\uffff"));
  const tbody = els.lots.tBodies[0];
  tbody.replaceChildren(...rows.map((l) => {
    const st = occupancyClass({ free: l.free, total: l.total, stale: l.stale === l.n });
    const label = l.lot ?? t("lots.nolot");
    return h("tr", { dataset: { lot: l.lot ?? "" } },
      h("th", { scope: "row" }, h("button", { type: "button", class: "link", "aria-pressed": String(lotFilter === (l.lot ?? "")), onclick: () => filterLot(l.lot ?? "") }, label)),
      h("td", { class: "num" }, `${formatNumber(l.free)} / ${formatNumber(l.total)}`),
      h("td", {}, h("span", { class: `badge ${st}` }, t(`legend.${st}`))));
  }));
  if (!rows.length) tbody.replaceChildren(h("tr", {}, h("td", { colspan: "3", class: "muted" }, t("lots.none"))));

  const q = els["zone-filter"].value.trim().toLowerCase();
  const match = [...zones.values()].filter((z) => {
    if (lotFilter !== null && (z.lot ?? "") !== lotFilter) return false;
    if (!q) return true;
    return [z.id, z.name, z.lot, z.camera].some((v) => v && String(v).toLowerCase().includes(q));
  });
  match.sort((a, b) => String(a.lot ?? "").localeCompare(String(b.lot ?? "")) || String(a.id).localeCompare(String(b.id), undefined, { numeric: true }));
  els["zone-count"].textContent = t("zones.count", { n: formatNumber(match.length) });
  els["zone-list"].replaceChildren(...match.slice(0, MAX_LISTED_ZONES).map((z) => {
    const st = occupancyClass(z);
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
  const st = occupancyClass(z);
  const updated = parseTime(z.updated_at);
  const facts = [
    [t("zone.title"), `${z.name || z.zone_id || z.id}`],
    ["ID", z.id],
    [t("zone.state"), h("span", { class: `badge ${st}`, id: "detail-state", dataset: { state: st } },
      z.kind === "space" && z.occupied != null ? t(z.occupied ? "zone.occupied" : "zone.vacant") : t(`legend.${st}`))],
    [t("zone.free"), `${formatNumber(z.free)} / ${formatNumber(z.total)}`],
    [t("zone.camera"), z.camera ?? "–"],
    [t("zone.lot"), z.lot ?? "–"],
    [t("zone.updated"), updated ? `${formatAgo(updated)} (${formatTime(updated)})${z.stale ? ` — ${t("legend.stale")}` : ""}` : "–"],
  ];
  els["detail-facts"].replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
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
  let body;
  try {
    body = await getJson(zonePath(PATHS.history, id), { ...rangeParams(range), bucket: HISTORY_BUCKET[range] }, { auth: true });
  } catch (err) {
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
      {},
      { label: t("zone.free"), stroke: "#1a7f37", width: 2, fill: "rgba(26,127,55,0.12)", paths: uPlot.paths.stepped({ align: 1 }) },
      { label: "min", stroke: "#9a6700", dash: [4, 4] },
      { label: "max", stroke: "#0a58ca", dash: [2, 4] },
      { label: "total", stroke: "#57606a", width: 1 },
    ],
    axes: [{}, { label: t("zone.free") }],
    scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
  }, [xs, points.map((p) => p.free), points.map((p) => p.min), points.map((p) => p.max), points.map((p) => p.total)], els["history-chart"]);
}

async function exportHistory() {
  if (!selected) return;
  const range = els["history-range"].value;
  await download(zonePath(PATHS.history, selected), { ...rangeParams(range), bucket: HISTORY_BUCKET[range], format: "csv" },
    `${selected.replace(/[^A-Za-z0-9_.-]+/g, "_")}-history.csv`);
}

// -- cameras -------------------------------------------------------------------------------

let cameras = [];

async function loadCameras() {
  const body = await getJson(PATHS.cameras, {}, { auth: true });
  cameras = body.cameras ?? [];
  setStatus(els["cams-status"], "");
  renderCameras();
}

function renderCameras() {
  const tbody = els.cams.tBodies[0];
  if (!cameras.length) {
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: "7", class: "muted" }, t("cams.none"))));
    return;
  }
  tbody.replaceChildren(...cameras.map((c) => {
    const status = c.status ?? "unknown";
    const seen = parseTime(c.last_seen_at ?? c.last_heard_at);
    const hl = c.health ?? {};
    const snapshot = c.snapshot_url
      ? h("img", { src: c.snapshot_url, alt: t("cams.snapshot", { cam: c.camera }), class: "camera-thumb", loading: "lazy" })
      : null;
    return h("tr", { dataset: { camera: `${c.site}:${c.camera}`, status } },
      h("th", { scope: "row" }, c.camera, h("div", { class: "muted small" }, c.site), snapshot),
      h("td", {}, h("span", { class: `badge ${status}` }, t(`status.${status}`))),
      h("td", {}, seen ? h("time", { datetime: seen.toISOString(), title: formatTime(seen) }, formatAgo(seen)) : "–"),
      h("td", { class: "num" }, hl.fps != null ? formatNumber(hl.fps, { maximumFractionDigits: 1 }) : "–"),
      h("td", { class: "num" }, hl.reconnects != null ? formatNumber(hl.reconnects) : "–"),
      h("td", { class: "num" }, formatDuration(hl.last_frame_age_s)),
      h("td", { class: "small" }, hl.error || c.detail || ""));
  }));
}

// -- traffic -------------------------------------------------------------------------------

let traffic = [];

async function loadTraffic() {
  const range = els["traffic-range"].value;
  let body;
  try {
    body = await getJson(PATHS.traffic, { ...rangeParams(range), bucket: els["traffic-bucket"].value, by: "class,direction" }, { auth: true });
  } catch (err) {
    setStatus(els["traffic-status"], t("error.load", { what: t("traffic.title").toLowerCase(), msg: errText(err) }), { error: true });
    return;
  }
  traffic = (body.points ?? body.counts ?? []).map((p) => ({
    line: String(p.line_id ?? p.line),
    t: parseTime(p.start ?? p.bucket),
    direction: p.direction ?? "",
    vclass: p.class ?? p.vclass ?? "",
    count: p.count ?? 0,
  })).filter((p) => p.t);
  const lines = [...new Set(traffic.map((p) => p.line))].sort();
  const keep = els["traffic-line"].value;
  els["traffic-line"].replaceChildren(...lines.map((l) => new Option(l, l)));
  if (lines.includes(keep)) els["traffic-line"].value = keep;
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
  if (!traffic.length) { setStatus(els["traffic-status"], t("traffic.noline")); return; }
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
  const name = (s) => { const [d, c] = s.split("\u0000"); return `${d} · ${t(`class.${c}`)}`; };
  trafficPlot = new uPlot({
    width: chartWidth(els["traffic-chart"]),
    height: 240,
    series: [{}, ...series.map((s, i) => ({ label: name(s), stroke: palette[i % palette.length], width: 2, points: { show: times.length < 60 } }))],
    scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
  }, data, els["traffic-chart"]);
  // The same figures as a table: readable without the chart (screen readers, printing).
  const directions = [...new Set(pts.map((p) => p.direction))].sort();
  const classes = [...new Set(pts.map((p) => p.vclass))].sort();
  els["traffic-table"].tHead.replaceChildren(h("tr", {}, h("th", { scope: "col" }, t("traffic.class")),
    ...directions.map((d) => h("th", { scope: "col", class: "num" }, d)), h("th", { scope: "col", class: "num" }, t("traffic.total"))));
  els["traffic-table"].tBodies[0].replaceChildren(...classes.map((c) => {
    const cells = directions.map((d) => totals.get(`${d}\u0000${c}`) ?? 0);
    return h("tr", {}, h("th", { scope: "row" }, t(`class.${c}`)), ...cells.map((v) => h("td", { class: "num" }, formatNumber(v))),
      h("td", { class: "num" }, formatNumber(cells.reduce((a, b) => a + b, 0))));
  }));
}

async function exportTraffic() {
  const range = els["traffic-range"].value;
  const line = els["traffic-line"].value;
  await download(PATHS.traffic, { ...rangeParams(range), bucket: els["traffic-bucket"].value, by: "class,direction", line_id: line || undefined, format: "csv" },
    `traffic-${(line || "all").replace(/[^A-Za-z0-9_.-]+/g, "_")}.csv`);
}

// -- live updates --------------------------------------------------------------------------

function connectLive() {
  if (live.ws) return;
  const u = url(PATHS.live);
  u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const key = apiKey.get();
  if (key) u.searchParams.set("key", key); // browsers cannot send headers on a WebSocket
  let ws;
  try {
    ws = new WebSocket(u);
  } catch {
    startPolling();
    return;
  }
  live.ws = ws;
  ws.addEventListener("open", () => {
    live.retry = 0;
    stopPolling();
    setLive("live");
    refresh(); // whatever changed while we were away
  });
  ws.addEventListener("message", () => refresh());
  ws.addEventListener("close", () => {
    live.ws = null;
    startPolling();
    // Reconnect with back-off (1 s, 2 s, ... 30 s): an API restart must not need a page reload.
    const delay = Math.min(30_000, 1000 * 2 ** live.retry++);
    setTimeout(connectLive, delay);
  });
}

function startPolling() {
  setLive(navigator.onLine ? "polling" : "offline");
  if (live.pollTimer) return;
  live.pollTimer = setInterval(refresh, cfg.refresh_s * 1000);
}

function stopPolling() {
  clearInterval(live.pollTimer);
  live.pollTimer = null;
}

/** Re-read what the page shows; bursts of messages collapse into one refresh per LIVE_MIN_GAP_MS. */
function refresh() {
  if (live.timer) { live.pending = true; return; }
  const wait = Math.max(0, live.lastRun + LIVE_MIN_GAP_MS - Date.now());
  live.timer = setTimeout(async () => {
    live.lastRun = Date.now();
    live.pending = false;
    try {
      await Promise.allSettled([loadZones(), loadCameras().catch(showError(els["cams-status"]))]);
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
  if (traffic.length) renderTraffic();
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
