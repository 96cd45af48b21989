// Every call the pages make to the API goes through here, so the contract lives in one file
// (tests/test_web.py checks that each path below exists in the API's OpenAPI document).

export const PATHS = {
  nearby: "/v1/parking/nearby",
  zone: "/v1/parking/zones/{id}",
  zonesGeojson: "/v1/parking/zones.geojson",
  lots: "/v1/parking/lots",
  history: "/v1/parking/zones/{id}/history",
  cameras: "/v1/cameras",
  cameraSnapshot: "/v1/cameras/{id}/snapshot",
  traffic: "/v1/traffic/counts",
  live: "/v1/live",
};

const KEY_NAME = "cityeye.apiKey";
export const KEY_HEADER = "X-API-Key";

export class ApiError extends Error {
  constructor(status, message, { offline = false } = {}) {
    super(message);
    this.status = status;
    this.offline = offline;
  }
}

/** The operator key: sessionStorage unless the operator asked to be remembered on this device. */
export const apiKey = {
  get() {
    try { return sessionStorage.getItem(KEY_NAME) || localStorage.getItem(KEY_NAME) || ""; } catch { return ""; }
  },
  set(key, remember) {
    this.clear();
    try { (remember ? localStorage : sessionStorage).setItem(KEY_NAME, key); } catch { /* storage off: key lost on reload */ }
  },
  clear() {
    try { sessionStorage.removeItem(KEY_NAME); localStorage.removeItem(KEY_NAME); } catch { /* nothing stored */ }
  },
};

export function url(path, params = {}) {
  const u = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, String(v));
  }
  return u;
}

export function zonePath(template, id) {
  // Zone ids may contain '/', which the API's path converter accepts; everything else is escaped.
  return template.replace("{id}", id.split("/").map(encodeURIComponent).join("/"));
}

/** GET JSON; `auth` adds the operator key. Errors carry the API's own message (`detail`). */
export async function getJson(path, params = {}, { auth = false, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (auth) {
    const key = apiKey.get();
    if (key) headers[KEY_HEADER] = key;
  }
  let res;
  try {
    res = await fetch(url(path, params), { headers, signal, cache: "no-store" });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "network", { offline: true });
  }
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    try {
      const body = await res.json();
      if (typeof body.detail === "string") msg = body.detail;
      else if (Array.isArray(body.detail)) msg = body.detail.map((d) => d.msg).join("; ");
    } catch { /* not JSON */ }
    throw new ApiError(res.status, msg, { offline: res.status === 503 && res.headers.has("X-Cityeye-Offline") });
  }
  const body = await res.json();
  const cachedAt = res.headers.get("X-Cityeye-Cached-At");
  if (cachedAt && body && typeof body === "object") {
    Object.defineProperty(body, "cachedAt", { value: new Date(cachedAt), enumerable: false });
  }
  return body;
}

/** An image behind the operator key as an object URL (an <img> cannot send a header); revoke it when replaced. */
export async function imageUrl(path) {
  const headers = { Accept: "image/*" };
  const key = apiKey.get();
  if (key) headers[KEY_HEADER] = key;
  const res = await fetch(url(path), { headers, cache: "no-store" });
  if (!res.ok) throw new ApiError(res.status, `${res.status} ${res.statusText}`);
  return URL.createObjectURL(await res.blob());
}

/** Download with the operator key (a plain link cannot send a header). */
export async function download(path, params, filename) {
  const headers = { Accept: "text/csv" };
  const key = apiKey.get();
  if (key) headers[KEY_HEADER] = key;
  const res = await fetch(url(path, params), { headers, cache: "no-store" });
  if (!res.ok) throw new ApiError(res.status, `${res.status} ${res.statusText}`);
  const blob = await res.blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

export function parseTime(v) {
  if (v == null) return null;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** free/total -> the four states drawn on maps and lists (stale wins: an old figure is not a fact). */
export function occupancyClass({ free, total, stale }) {
  if (stale) return "stale";
  if (!total) return "full";
  if (free <= 0) return "full";
  return free / total >= 0.25 ? "free" : "some";
}

export function fetchConfig() {
  return getJson("/web/config.json");
}
