// Start-up shared by both pages: language, the service worker (offline app shell), and small DOM helpers.

import { bindLanguageSelect, translate } from "./i18n.js";

export function startPage() {
  translate(document);
  const select = document.getElementById("lang");
  if (select) bindLanguageSelect(select);
  if ("serviceWorker" in navigator) {
    // Scope "/" so that the short links (/driver, /operator) open offline too; the worker
    // answers only for the pages and public parking data and lets everything else through.
    navigator.serviceWorker.register("/web/sw.js", { scope: "/" }).catch((err) => {
      // The pages still work online without it; only offline start-up is lost.
      console.warn("service worker not registered:", err.message);
    });
  }
}

/** Create an element: h("td", {class: "num"}, "12"). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

export function setStatus(el, text, { error = false } = {}) {
  el.textContent = text;
  el.classList.toggle("error", error);
}
