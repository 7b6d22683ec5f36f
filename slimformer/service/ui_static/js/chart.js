// The Pareto chart, plain SVG: measured latency (x, one runtime at a time) against a task metric (y).
// Every measured candidate is a dot; on onnxruntime a finalist's int8 model is a triangle of its
// own (points.js); the front of what is shown is a staircase; the teacher and baselines (where the
// API reports them) are labelled marks. Hover or focus a mark for its figures.

import { fill, fmt, h, svg } from "./dom.js";
import { RUNTIMES, candidateLatency, plotted, pointLatencies, referenceLatency, valueOf } from "./points.js";

export { RUNTIMES, candidateLatency, valueOf };  // the table and the job page read figures the same way

const W = 720;
const H = 400;
const M = { left: 64, right: 28, top: 18, bottom: 50 };

export const metricLabel = (key) => key.replace(/_/g, " ").replace("macro f1", "macro-F1");

// The metrics the candidates have figures for: accuracy, and any macro-F1 the API reports.
export function metricChoices(candidates) {
  const keys = ["dev_accuracy", "test_accuracy"];  // then dev/test macro-F1 (not the search's shared-weight ones)
  for (const c of candidates) {
    for (const [key, value] of Object.entries(c.metrics || {})) {
      if (/^(dev|test)_macro_f1$/.test(key) && typeof value === "number" && !keys.includes(key)) keys.push(key);
    }
  }
  return keys.filter((key) => candidates.some((c) => valueOf(c, key) != null));
}

// Ids of the points no other point beats on both axes (lower latency, higher metric).
export function paretoFront(points) {
  const sorted = [...points].sort((a, b) => a.x - b.x || b.y - a.y);
  const front = new Set();
  let best = -Infinity;
  for (const p of sorted) {
    if (p.y > best) {
      front.add(p.id);
      best = p.y;
    }
  }
  return front;
}

const decimals = (step) => Math.max(0, -Math.floor(Math.log10(step) + 1e-9));

function niceStep(span, count) {
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = [1, 2, 5, 10].find((m) => m * power >= raw) || 10;
  return unit * power;
}

// A padded, rounded domain and its ticks; never below zero for values that are not.
function axis(values, count = 5) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  const floor = lo >= 0 ? 0 : -Infinity;
  const pad = hi > lo ? (hi - lo) * 0.08 : Math.abs(hi) * 0.1 || 0.1;
  lo = Math.max(floor, lo - pad);
  hi += pad;
  const step = niceStep(hi - lo, count);
  lo = Math.floor(lo / step) * step;
  hi = Math.ceil(hi / step) * step;
  const ticks = [];
  for (let t = lo; t <= hi + step / 2; t += step) ticks.push(Number(t.toPrecision(12)));
  return { lo, hi, ticks, step };
}

const archText = (c) =>
  c.metrics?.short ||
  (c.arch && Array.isArray(c.arch.blocks)
    ? `H${c.arch.hidden}${c.arch.embedding_rank ? ` r${c.arch.embedding_rank}` : ""} | ${c.arch.blocks.map((b) => b.join(" ")).join(" | ")}`
    : JSON.stringify(c.arch || {}));

function figureLines(item, metrics, latencies) {
  return [
    ...metrics.map((key) => [metricLabel(key), fmt.score(valueOf(item, key))]),
    ...latencies.map(([label, value]) => [`latency ${label}`, fmt.ms(value)]),
    ["params", fmt.count(valueOf(item, "params"))],
  ].filter(([, text]) => text !== "–");
}

const VARIANT_TEXT = { fp32: "fp32 ONNX / safetensors", int8: "int8 ONNX (dynamically quantized)" };

function tooltipContent(point, state) {
  const metrics = state.metrics;
  if (point.ref) {
    const ref = point.ref;
    const latencies = RUNTIMES.map((r) => [r.label, valueOf(ref, r.key)]);
    if (latencies.every(([, v]) => v == null)) latencies.push([`(${ref.runtime || "as reported"})`, valueOf(ref, "latency_ms")]);
    return [h("strong", {}, ref.title || ref.label), h("div", { class: "muted" }, ref.kind),
      table(figureLines(ref, metrics, latencies))];
  }
  const c = point.candidate;
  const figures = point.figures;
  const reason = c.metrics?.recommended_reason;
  return [
    h("strong", {}, `candidate ${c.id.slice(-8)}`, point.variant ? ` · ${point.variant}` : "",
      point.front ? " · on the front" : ""),
    point.variant ? h("div", { class: "muted small" }, VARIANT_TEXT[point.variant] || point.variant) : null,
    h("div", { class: "mono small arch" }, archText(c)),
    table([...figureLines(figures, metrics, pointLatencies(point, state.jobRuntime)),
      ["memory", fmt.mb(valueOf(figures, "memory_mb"))], ["state", c.state]]),
    point.recommended ? h("div", { class: "small rec-note" }, `recommended variant${reason ? `: ${reason}` : ""}`) : null,
    point.withinBudget ? null : h("div", { class: "warn small" }, "over the job's budgets"),
  ];
}

const table = (rows) => h("table", {}, rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v))));

function referenceMark(kind, x, y) {
  if (kind === "teacher") {
    const star = [];
    for (let i = 0; i < 10; i++) {
      const r = i % 2 ? 4 : 9;
      const a = (Math.PI / 5) * i - Math.PI / 2;
      star.push(`${(x + r * Math.cos(a)).toFixed(1)},${(y + r * Math.sin(a)).toFixed(1)}`);
    }
    return svg("polygon", { points: star.join(" ") });
  }
  if (kind === "baseline") return svg("rect", { x: x - 6, y: y - 6, width: 12, height: 12 });
  return svg("polygon", { points: `${x},${y - 8} ${x + 8},${y} ${x},${y + 8} ${x - 8},${y}` });
}

// Draw into `container` (emptied first). state: {candidates, references, runtime, metric,
// metrics (keys shown on hover), jobRuntime, front (a Set of ids, or null to compute), selected, onSelect}.
export function drawChart(container, state) {
  const { runtime, metric } = state;
  const points = plotted(state.candidates, runtime, metric, state.jobRuntime);
  const refs = state.references
    .map((ref, i) => ({ id: `ref-${i}`, ref, x: referenceLatency(ref, runtime), y: valueOf(ref, metric) }))
    .filter((p) => p.x != null && p.y != null);
  if (!points.length && !refs.length) {
    container.replaceChildren(h("p", { class: "empty" }, `No candidate has a ${runtime.label} latency and a `,
      `${metricLabel(metric)} yet: candidates appear here once they are measured.`));
    return { shown: 0, points: 0, front: new Set() };
  }
  // The job's own front where given (candidate ids); otherwise recomputed among the points within
  // budget, each variant on its own figures.
  const eligible = points.filter((p) => p.withinBudget);
  const front = state.front || paretoFront(eligible.length ? eligible : points);
  for (const p of points) p.front = front.has(p.id);
  const shown = new Set(points.map((p) => p.candidate.id)).size;
  const xa = axis([...points, ...refs].map((p) => p.x));
  const ya = axis([...points, ...refs].map((p) => p.y));
  const px = (x) => M.left + ((x - xa.lo) / (xa.hi - xa.lo)) * (W - M.left - M.right);
  const py = (y) => H - M.bottom - ((y - ya.lo) / (ya.hi - ya.lo)) * (H - M.top - M.bottom);

  const grid = svg("g", { class: "grid" },
    xa.ticks.map((t) => [svg("line", { x1: px(t), x2: px(t), y1: M.top, y2: H - M.bottom }),
      svg("text", { x: px(t), y: H - M.bottom + 16, "text-anchor": "middle" }, t.toFixed(decimals(xa.step)))]),
    ya.ticks.map((t) => [svg("line", { x1: M.left, x2: W - M.right, y1: py(t), y2: py(t) }),
      svg("text", { x: M.left - 8, y: py(t) + 4, "text-anchor": "end" }, t.toFixed(decimals(ya.step)))]));
  const titles = svg("g", { class: "axis-title" },
    svg("text", { x: (M.left + W - M.right) / 2, y: H - 10, "text-anchor": "middle" },
      `measured latency, ${runtime.label} (ms)`),
    svg("text", { x: 16, y: (M.top + H - M.bottom) / 2, "text-anchor": "middle",
      transform: `rotate(-90 16 ${(M.top + H - M.bottom) / 2})` }, metricLabel(metric)));

  const stairs = points.filter((p) => p.front).sort((a, b) => a.x - b.x);
  const path = stairs.map((p, i) => (i ? `H${px(p.x).toFixed(1)}V${py(p.y).toFixed(1)}` :
    `M${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`)).join("");
  const frontLine = svg("path", { class: "front-line", d: path });

  const tooltip = h("div", { class: "tooltip", role: "tooltip", id: "chart-tooltip", hidden: true });
  const show = (point, el) => {
    fill(tooltip, tooltipContent(point, state));
    tooltip.hidden = false;
    const box = container.getBoundingClientRect();
    const mark = el.getBoundingClientRect();
    const left = mark.right - box.left + 10;
    tooltip.style.left = `${Math.min(left, box.width - 260)}px`;
    tooltip.style.top = `${Math.max(0, mark.top - box.top - 10)}px`;
  };
  const hide = () => { tooltip.hidden = true; };
  const interactive = (el, point) => {
    el.addEventListener("pointerenter", () => show(point, el));
    el.addEventListener("pointerleave", hide);
    el.addEventListener("focus", () => show(point, el));
    el.addEventListener("blur", hide);
    return el;
  };

  // Front points are drawn last, so where two marks overlap (models a few hundredths of a
  // millisecond apart at one score) the one on the front takes the pointer.
  const drawOrder = [...points].sort((a, b) => Number(Boolean(a.front)) - Number(Boolean(b.front)));
  const dots = svg("g", { class: "points" }, drawOrder.map((p) => {
    const attrs = {
      tabindex: 0, "data-candidate-id": p.candidate.id, "data-variant": p.variant,
      "data-recommended": p.recommended ? "true" : null,
      class: `pt${p.variant === "int8" ? " int8" : ""}${p.front ? " front" : ""}${
        p.candidate.id === state.selected ? " selected" : ""}${p.withinBudget ? "" : " over"}`,
      "aria-label": `candidate ${p.candidate.id}${p.variant ? ` ${p.variant}` : ""}: ${fmt.ms(p.x)}, ${
        metricLabel(metric)} ${fmt.score(p.y)}${p.recommended ? ", recommended" : ""}`,
      onclick: () => state.onSelect?.(p.candidate.id),
      onkeydown: (e) => { if (e.key === "Enter") state.onSelect?.(p.candidate.id); },
    };
    const x = px(p.x);
    const y = py(p.y);
    // int8 is a triangle, so it reads apart from its fp32 twin without colour; the recommended
    // variant of a finalist gets a ring (drawn under the mark, so the mark keeps the pointer).
    const mark = p.variant === "int8"
      ? svg("polygon", { ...attrs, points: `${x},${y - 8} ${x + 7.5},${y + 5.5} ${x - 7.5},${y + 5.5}` })
      : svg("circle", { ...attrs, cx: x, cy: y, r: 6 });
    return [p.recommended ? svg("circle", { class: "rec-ring", cx: x, cy: y, r: 11 }) : null, interactive(mark, p)];
  }));
  const marks = svg("g", { class: "refs" }, refs.map((p) => {
    const mark = referenceMark(p.ref.kind, px(p.x), py(p.y));
    mark.setAttribute("class", `ref ${p.ref.kind}`);
    mark.setAttribute("tabindex", "0");
    mark.setAttribute("data-reference", p.ref.kind);
    // A label that would run past the plot's right edge (about 7 px a character) goes left of its mark.
    const right = px(p.x) + 11 + 7 * p.ref.label.length > W - M.right;
    return [interactive(mark, p), svg("text", { x: px(p.x) + (right ? -11 : 11), y: py(p.y) - 8, class: "ref-label",
      "text-anchor": right ? "end" : "start" }, p.ref.label)];
  }));

  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "pareto", id: "pareto-chart", role: "img",
    "aria-label": `Pareto chart: ${points.length} points of ${shown} candidates, ${front.size} on the front` },
  grid, titles, frontLine, dots, marks);
  container.replaceChildren(chart, tooltip);
  return { shown, points: points.length, front };
}
