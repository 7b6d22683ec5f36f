// Building elements without innerHTML (names and messages come from users), and number formats.

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.setAttribute("class", value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

// h("a", {href: "#/jobs", class: "x"}, "text", otherNode)
export const h = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);

const SVG_NS = "http://www.w3.org/2000/svg";
export const svg = (tag, attrs, ...children) => build(document.createElementNS(SVG_NS, tag), attrs, children);

const missing = (v) => v == null || Number.isNaN(v);

export const fmt = {
  ms: (v) => (missing(v) ? "–" : `${v < 10 ? v.toFixed(2) : v.toFixed(1)} ms`),
  score: (v) => (missing(v) ? "–" : v.toFixed(3)),
  pct: (v) => (missing(v) ? "–" : `${Math.round(v * 100)}%`),
  mb: (v) => (missing(v) ? "–" : `${v < 10 ? v.toFixed(2) : v.toFixed(1)} MB`),
  count: (v) => {
    if (missing(v)) return "–";
    if (v >= 1e6) return `${(v / 1e6).toFixed(2)} M`;
    if (v >= 1e3) return `${(v / 1e3).toFixed(1)} k`;
    return String(v);
  },
  duration: (seconds) => {
    if (missing(seconds)) return "–";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  },
  time: (iso) => (iso ? new Date(iso).toLocaleString() : "–"),
  clock: (iso) => (iso ? new Date(iso).toLocaleTimeString() : ""),
};

// Replace an element's children, skipping the null and false that optional parts leave.
export const fill = (el, ...children) =>
  el.replaceChildren(...children.flat(Infinity).filter((c) => c != null && c !== false));

export const statusBadge = (status) => h("span", { class: `badge ${status}`, "data-status": status }, status);

// The width is set through the CSSOM: the page's Content-Security-Policy refuses style attributes.
export function progressBar(fraction) {
  const percent = Math.round((fraction || 0) * 100);
  const bar = h("div", { class: "bar" });
  bar.style.width = `${percent}%`;
  return h("div", { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
    "aria-valuenow": percent }, bar);
}

export const errorBox = (message) => h("p", { class: "error", role: "alert" }, message);
