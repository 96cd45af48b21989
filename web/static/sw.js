// Service worker of the cityeye pages (served by web/routes.py, which fills in the version and file list).
//
// The app shell is pre-cached under a name derived from the files' content, so a page opens with
// no network and a release replaces the old shell on the next online visit. Public parking data is
// network-first with a bounded fallback cache (the driver sees the last figures and when they were
// saved); anything sent with an operator key is never stored.

const VERSION = "__SHELL_VERSION__";
const SHELL = __SHELL_FILES__;
const SHELL_CACHE = `cityeye-shell-${VERSION}`;
const DATA_CACHE = "cityeye-data-v1";
const DATA_MAX_ENTRIES = 30;
const PUBLIC_DATA = new Set([
  "/web/config.json",
  "/v1/parking/nearby",
  "/v1/parking/zones.geojson",
  "/v1/parking/lots",
]);
const PAGES = new Map([["/operator", "/web/operator.html"], ["/driver", "/web/driver.html"], ["/web/", "/web/index.html"]]);

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL_CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(
        names.filter((n) => n.startsWith("cityeye-") && n !== SHELL_CACHE && n !== DATA_CACHE).map((n) => caches.delete(n)),
      ))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const req = event.request;
  const u = new URL(req.url);
  if (req.method !== "GET" || u.origin !== self.location.origin) return;
  if (req.headers.has("X-API-Key") || req.headers.has("Authorization")) return;
  if (PUBLIC_DATA.has(u.pathname)) {
    event.respondWith(networkFirst(req));
  } else if (u.pathname.startsWith("/web/") || PAGES.has(u.pathname)) {
    event.respondWith(shellFirst(req, PAGES.get(u.pathname) ?? u.pathname));
  }
});

async function shellFirst(req, path) {
  const cache = await caches.open(SHELL_CACHE);
  const hit = await cache.match(path, { ignoreSearch: true });
  if (hit) return hit;
  return fetch(req);
}

async function networkFirst(req) {
  const cache = await caches.open(DATA_CACHE);
  try {
    const res = await fetch(req);
    if (res.ok) {
      const headers = new Headers(res.headers);
      headers.set("X-Cityeye-Stored-At", new Date().toISOString());
      const body = await res.clone().arrayBuffer();
      await cache.delete(req);
      await cache.put(req, new Response(body, { status: res.status, statusText: res.statusText, headers }));
      await evict(cache);
    }
    return res;
  } catch (err) {
    const hit = await cache.match(req);
    if (hit) {
      const headers = new Headers(hit.headers);
      headers.set("X-Cityeye-Cached-At", hit.headers.get("X-Cityeye-Stored-At") || "");
      return new Response(await hit.arrayBuffer(), { status: 200, headers });
    }
    return new Response(JSON.stringify({ detail: "offline and nothing saved for this request" }), {
      status: 503,
      headers: { "Content-Type": "application/json", "X-Cityeye-Offline": "1" },
    });
  }
}

/** Keep the data cache bounded: every driver position is its own URL. Keys come oldest first. */
async function evict(cache) {
  const keys = await cache.keys();
  for (const k of keys.slice(0, Math.max(0, keys.length - DATA_MAX_ENTRIES))) await cache.delete(k);
}
