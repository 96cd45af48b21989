// Vietnamese and English for both pages. The choice is remembered per device; the first visit
// follows the browser's language list. Markup names its strings with data-i18n (text),
// data-i18n-label (aria-label) and data-i18n-placeholder, so switching needs no reload.

const STRINGS = {
  en: {
    "lang.name": "English",
    "lang.label": "Language",
    "skip": "Skip to content",
    "app.operator": "Operator dashboard",
    "app.driver": "Find parking",
    "live.live": "Live",
    "live.polling": "Refreshing every {s} s",
    "live.offline": "Offline",
    "live.connecting": "Connecting…",
    "login.title": "Operator sign-in",
    "login.help": "Enter an API key with the operator role. It is kept in this browser tab only, unless you tick “remember”.",
    "login.key": "API key",
    "login.remember": "Remember on this device",
    "login.submit": "Sign in",
    "login.bad": "This key was refused ({status}). Check it, or ask an administrator for a key with the operator role.",
    "logout": "Sign out",
    "map.title": "Parking zones",
    "map.label": "Map of parking zones coloured by occupancy",
    "legend.free": "Mostly free",
    "legend.some": "Filling up",
    "legend.full": "Full",
    "legend.stale": "Out of date",
    "lots.title": "Lots",
    "lots.none": "No parking zones reported yet.",
    "lots.nolot": "Zones without a lot",
    "zones.filter": "Filter zones",
    "zones.count.one": "1 zone",
    "zones.count.other": "{n} zones",
    "zone.title": "Zone",
    "zone.pick": "Choose a zone on the map or in the list to see its history.",
    "zone.free": "Free",
    "zone.state": "State",
    "zone.occupied": "Occupied",
    "zone.vacant": "Free",
    "zone.camera": "Camera",
    "zone.lot": "Lot",
    "zone.updated": "Updated",
    "zone.range": "Period",
    "zone.csv": "Download CSV",
    "zone.nohistory": "No history in this period.",
    "chart.time": "Time",
    "chart.free_avg": "Free (average)",
    "chart.min": "least free",
    "chart.max": "most free",
    "chart.total": "places",
    "range.1h": "Last hour",
    "range.6h": "Last 6 hours",
    "range.24h": "Last 24 hours",
    "range.7d": "Last 7 days",
    "cams.title": "Cameras",
    "cams.none": "No camera has reported yet.",
    "cams.camera": "Camera",
    "cams.status": "Status",
    "cams.seen": "Last seen",
    "cams.fps": "FPS",
    "cams.reconnects": "Reconnects",
    "cams.frame_age": "Frame age",
    "cams.detail": "Detail",
    "cams.snapshot": "Latest snapshot of {cam}",
    "cams.went_offline": "Camera {cam} is offline.",
    "cams.back_online": "Camera {cam} is back online.",
    "traffic.title": "Traffic counts",
    "traffic.line": "Counting line",
    "traffic.bucket": "Bin",
    "traffic.none": "No traffic counts in this period.",
    "traffic.noline": "No counting line has reported yet.",
    "traffic.total": "Total",
    "traffic.class": "Class",
    "traffic.direction": "Direction",
    "bucket.5m": "5 minutes",
    "bucket.15m": "15 minutes",
    "bucket.1h": "1 hour",
    "class.car": "car",
    "class.motorcycle": "motorcycle",
    "class.bus": "bus",
    "class.truck": "truck",
    "class.bicycle": "bicycle",
    "status.online": "online",
    "status.offline": "offline",
    "status.connecting": "connecting",
    "status.streaming": "streaming",
    "status.stalled": "stalled",
    "status.reconnecting": "reconnecting",
    "status.error": "error",
    "status.unknown": "unknown",
    "freshness.ago": "updated {ago}",
    "freshness.stale": "may be out of date (updated {ago})",
    "error.load": "Could not load {what}: {msg}",
    "error.network": "the server cannot be reached",
    "offline.cached": "You are offline. Showing figures saved at {time}.",
    "driver.intro": "Free parking near you, nearest first. Figures come from the city's cameras.",
    "driver.locate": "Use my location",
    "driver.locating": "Finding your location…",
    "driver.pick": "Or tap the map to choose a point.",
    "driver.coords": "Enter coordinates",
    "driver.lat": "Latitude",
    "driver.lon": "Longitude",
    "driver.go": "Search here",
    "driver.radius": "Within",
    "driver.vehicle": "Vehicle",
    "driver.vehicle.any": "Any",
    "driver.vehicle.car": "Car",
    "driver.vehicle.motorcycle": "Motorbike",
    "driver.results": "Free places",
    "driver.map": "Map of free parking near the chosen point",
    "driver.none": "No free parking within {r}. Try a larger distance.",
    "driver.choose": "Choose where you want to park: use your location or tap the map.",
    "driver.found.one": "1 place with free spots near {where}.",
    "driver.found.other": "{n} places with free spots near {where}.",
    "driver.free": "{free} free",
    "driver.of": "of {total}",
    "driver.away": "{d} away",
    "driver.show": "Show on map",
    "driver.only.car": "cars only",
    "driver.only.motorcycle": "motorbikes only",
    "driver.geo.denied": "Location permission was refused. Tap the map or enter coordinates instead.",
    "driver.geo.unavailable": "Your location is not available. Tap the map or enter coordinates instead.",
    "driver.geo.unsupported": "This browser cannot share its location. Tap the map or enter coordinates instead.",
    "driver.bad_coords": "Enter a latitude between -90 and 90 and a longitude between -180 and 180.",
    "driver.here": "Your chosen point",
    "driver.zone": "Place",
    "km": "{v} km",
    "m": "{v} m",
  },
  vi: {
    "lang.name": "Tiếng Việt",
    "lang.label": "Ngôn ngữ",
    "skip": "Chuyển đến nội dung",
    "app.operator": "Bảng điều khiển vận hành",
    "app.driver": "Tìm chỗ đỗ xe",
    "live.live": "Trực tiếp",
    "live.polling": "Cập nhật mỗi {s} giây",
    "live.offline": "Mất kết nối",
    "live.connecting": "Đang kết nối…",
    "login.title": "Đăng nhập vận hành",
    "login.help": "Nhập khóa API có quyền vận hành. Khóa chỉ được giữ trong thẻ trình duyệt này, trừ khi bạn chọn “ghi nhớ”.",
    "login.key": "Khóa API",
    "login.remember": "Ghi nhớ trên thiết bị này",
    "login.submit": "Đăng nhập",
    "login.bad": "Khóa bị từ chối ({status}). Hãy kiểm tra lại, hoặc xin quản trị viên một khóa có quyền vận hành.",
    "logout": "Đăng xuất",
    "map.title": "Khu vực đỗ xe",
    "map.label": "Bản đồ các khu vực đỗ xe, tô màu theo mức lấp đầy",
    "legend.free": "Còn nhiều chỗ",
    "legend.some": "Sắp đầy",
    "legend.full": "Hết chỗ",
    "legend.stale": "Dữ liệu cũ",
    "lots.title": "Bãi đỗ",
    "lots.none": "Chưa có khu vực đỗ xe nào được báo về.",
    "lots.nolot": "Khu vực không thuộc bãi",
    "zones.filter": "Lọc khu vực",
    "zones.count.one": "{n} khu vực",
    "zones.count.other": "{n} khu vực",
    "zone.title": "Khu vực",
    "zone.pick": "Chọn một khu vực trên bản đồ hoặc trong danh sách để xem lịch sử.",
    "zone.free": "Còn trống",
    "zone.state": "Trạng thái",
    "zone.occupied": "Có xe",
    "zone.vacant": "Trống",
    "zone.camera": "Camera",
    "zone.lot": "Bãi",
    "zone.updated": "Cập nhật",
    "zone.range": "Khoảng thời gian",
    "zone.csv": "Tải CSV",
    "zone.nohistory": "Không có lịch sử trong khoảng này.",
    "chart.time": "Thời gian",
    "chart.free_avg": "Còn trống (trung bình)",
    "chart.min": "trống ít nhất",
    "chart.max": "trống nhiều nhất",
    "chart.total": "số chỗ",
    "range.1h": "1 giờ qua",
    "range.6h": "6 giờ qua",
    "range.24h": "24 giờ qua",
    "range.7d": "7 ngày qua",
    "cams.title": "Camera",
    "cams.none": "Chưa có camera nào báo về.",
    "cams.camera": "Camera",
    "cams.status": "Trạng thái",
    "cams.seen": "Lần cuối",
    "cams.fps": "FPS",
    "cams.reconnects": "Kết nối lại",
    "cams.frame_age": "Tuổi khung hình",
    "cams.detail": "Chi tiết",
    "cams.snapshot": "Ảnh mới nhất của {cam}",
    "cams.went_offline": "Camera {cam} đã ngoại tuyến.",
    "cams.back_online": "Camera {cam} đã trực tuyến trở lại.",
    "traffic.title": "Lưu lượng giao thông",
    "traffic.line": "Vạch đếm",
    "traffic.bucket": "Khoảng gộp",
    "traffic.none": "Không có số liệu giao thông trong khoảng này.",
    "traffic.noline": "Chưa có vạch đếm nào báo về.",
    "traffic.total": "Tổng",
    "traffic.class": "Loại xe",
    "traffic.direction": "Hướng",
    "bucket.5m": "5 phút",
    "bucket.15m": "15 phút",
    "bucket.1h": "1 giờ",
    "class.car": "ô tô",
    "class.motorcycle": "xe máy",
    "class.bus": "xe buýt",
    "class.truck": "xe tải",
    "class.bicycle": "xe đạp",
    "status.online": "trực tuyến",
    "status.offline": "ngoại tuyến",
    "status.connecting": "đang kết nối",
    "status.streaming": "đang truyền",
    "status.stalled": "bị treo",
    "status.reconnecting": "đang kết nối lại",
    "status.error": "lỗi",
    "status.unknown": "không rõ",
    "freshness.ago": "cập nhật {ago}",
    "freshness.stale": "có thể đã cũ (cập nhật {ago})",
    "error.load": "Không tải được {what}: {msg}",
    "error.network": "không kết nối được máy chủ",
    "offline.cached": "Bạn đang ngoại tuyến. Số liệu được lưu lúc {time}.",
    "driver.intro": "Chỗ đỗ xe còn trống gần bạn, gần nhất trước. Số liệu lấy từ camera của thành phố.",
    "driver.locate": "Dùng vị trí của tôi",
    "driver.locating": "Đang tìm vị trí của bạn…",
    "driver.pick": "Hoặc chạm vào bản đồ để chọn một điểm.",
    "driver.coords": "Nhập tọa độ",
    "driver.lat": "Vĩ độ",
    "driver.lon": "Kinh độ",
    "driver.go": "Tìm tại đây",
    "driver.radius": "Trong phạm vi",
    "driver.vehicle": "Loại xe",
    "driver.vehicle.any": "Tất cả",
    "driver.vehicle.car": "Ô tô",
    "driver.vehicle.motorcycle": "Xe máy",
    "driver.results": "Chỗ còn trống",
    "driver.map": "Bản đồ chỗ đỗ còn trống gần điểm đã chọn",
    "driver.none": "Không có chỗ trống trong phạm vi {r}. Hãy thử khoảng cách lớn hơn.",
    "driver.choose": "Chọn nơi bạn muốn đỗ: dùng vị trí của bạn hoặc chạm vào bản đồ.",
    "driver.found.one": "{n} điểm còn chỗ trống gần {where}.",
    "driver.found.other": "{n} điểm còn chỗ trống gần {where}.",
    "driver.free": "{free} chỗ trống",
    "driver.of": "trên {total}",
    "driver.away": "cách {d}",
    "driver.show": "Xem trên bản đồ",
    "driver.only.car": "chỉ ô tô",
    "driver.only.motorcycle": "chỉ xe máy",
    "driver.geo.denied": "Quyền truy cập vị trí bị từ chối. Hãy chạm vào bản đồ hoặc nhập tọa độ.",
    "driver.geo.unavailable": "Không lấy được vị trí của bạn. Hãy chạm vào bản đồ hoặc nhập tọa độ.",
    "driver.geo.unsupported": "Trình duyệt này không chia sẻ được vị trí. Hãy chạm vào bản đồ hoặc nhập tọa độ.",
    "driver.bad_coords": "Nhập vĩ độ từ -90 đến 90 và kinh độ từ -180 đến 180.",
    "driver.here": "Điểm bạn đã chọn",
    "driver.zone": "Chỗ đỗ",
    "km": "{v} km",
    "m": "{v} m",
  },
};

export const LANGS = Object.keys(STRINGS);
const STORE_KEY = "cityeye.lang";
let current = pickLanguage();
const listeners = [];

function pickLanguage() {
  const saved = safeGet(STORE_KEY);
  if (saved && STRINGS[saved]) return saved;
  for (const l of navigator.languages || [navigator.language || "en"]) {
    const base = String(l).toLowerCase().split("-")[0];
    if (STRINGS[base]) return base;
  }
  return "en";
}

function safeGet(key) {
  try { return localStorage.getItem(key); } catch { return null; }
}

export function lang() { return current; }

export function t(key, vars = {}) {
  const s = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : `{${k}}`));
}

/** Plural-aware t(): looks up `${key}.${rule}` (Intl.PluralRules: one, other, ...), then `${key}.other`. */
export function tn(key, n, vars = {}) {
  const rule = new Intl.PluralRules(current).select(n);
  const dict = STRINGS[current];
  const k = `${key}.${rule}` in dict ? `${key}.${rule}` : `${key}.other`;
  return t(k, { n: formatNumber(n), ...vars });
}

export function setLang(l) {
  if (!STRINGS[l]) return;
  current = l;
  try { localStorage.setItem(STORE_KEY, l); } catch { /* private mode: keep it for this page only */ }
  translate(document);
  for (const fn of listeners) fn(l);
}

export function onLangChange(fn) { listeners.push(fn); }

export function translate(root) {
  document.documentElement.lang = current;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  const title = document.querySelector("meta[name='cityeye-title']");
  if (title) document.title = t(title.content);
}

/** Wire a <select> to the language and keep it in step. */
export function bindLanguageSelect(select) {
  select.replaceChildren(...LANGS.map((l) => new Option(STRINGS[l]["lang.name"], l)));
  for (const o of select.options) o.lang = o.value;
  select.value = current;
  select.addEventListener("change", () => setLang(select.value));
  onLangChange((l) => { select.value = l; });
}

export function formatNumber(n, opts = {}) {
  return new Intl.NumberFormat(current, opts).format(n);
}

export function formatDistance(m) {
  if (m < 1000) return t("m", { v: formatNumber(Math.round(m / 10) * 10) });
  return t("km", { v: formatNumber(m / 1000, { maximumFractionDigits: 1 }) });
}

/** "2 minutes ago" in the page language; what a driver needs to judge a figure. */
export function formatAgo(date, now = Date.now()) {
  const s = Math.round((date.getTime() - now) / 1000);
  const rtf = new Intl.RelativeTimeFormat(current, { numeric: "auto" });
  const a = Math.abs(s);
  if (a < 45) return rtf.format(0, "second"); // "now": finer is noise next to a camera's interval
  if (a < 45 * 60) return rtf.format(Math.round(s / 60), "minute");
  if (a < 22 * 3600) return rtf.format(Math.round(s / 3600), "hour");
  return rtf.format(Math.round(s / 86400), "day");
}

export function formatTime(date) {
  return new Intl.DateTimeFormat(current, { dateStyle: "short", timeStyle: "short" }).format(date);
}

export function formatDuration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "–";
  if (seconds < 90) return `${formatNumber(Math.round(seconds))} s`;
  if (seconds < 5400) return `${formatNumber(Math.round(seconds / 60))} min`;
  return `${formatNumber(seconds / 3600, { maximumFractionDigits: 1 })} h`;
}
