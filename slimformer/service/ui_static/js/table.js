// The candidate table: figures per candidate, sortable, with a download button per ready format.

import { download } from "./api.js";
import { RUNTIMES, candidateLatency, metricLabel, valueOf } from "./chart.js";
import { errorBox, fmt, h } from "./dom.js";

const FORMAT_LABELS = { hf: "safetensors", onnx: "ONNX", "onnx-int8": "ONNX int8" };
const ms = (v) => fmt.ms(v).replace(" ms", "");

function columns(view) {
  return [
    { id: "pareto", title: "Front", value: (c) => (c.pareto ? 1 : 0), cell: (c) => (c.pareto ? "★" : ""),
      hint: "on the job's Pareto front" },
    { id: "id", title: "Candidate", value: (c) => c.id,
      cell: (c) => [h("span", { class: "mono", title: c.id }, c.id.slice(-8)), c.state === "exported" ? null
        : h("span", { class: "muted small" }, ` ${c.state}`),
      c.metrics?.within_budget === false ? h("span", { class: "warn small" }, " over budget") : null,
      h("div", { class: "muted mono small arch" }, c.metrics?.short || "")] },
    ...view.metrics.map((key) => ({ id: key, title: metricLabel(key), value: (c) => valueOf(c, key),
      cell: (c) => fmt.score(valueOf(c, key)), numeric: true })),
    ...RUNTIMES.map((r) => ({ id: r.id, title: `${r.id} ms`, hint: `latency measured with ${r.label}`,
      value: (c) => candidateLatency(c, r, view.jobRuntime), cell: (c) => ms(candidateLatency(c, r, view.jobRuntime)),
      numeric: true })),
    { id: "predicted", title: "predicted ms", hint: "latency the search predicted (torch)",
      value: (c) => c.predicted_latency_ms, cell: (c) => ms(c.predicted_latency_ms), numeric: true },
    { id: "params", title: "params", value: (c) => c.params, cell: (c) => fmt.count(c.params), numeric: true },
    { id: "memory", title: "memory", value: (c) => c.memory_mb, cell: (c) => fmt.mb(c.memory_mb), numeric: true },
  ];
}

function sorted(candidates, column, descending) {
  const missingLast = (v) => v == null;
  return [...candidates].sort((a, b) => {
    const va = column.value(a);
    const vb = column.value(b);
    if (missingLast(va) !== missingLast(vb)) return missingLast(va) ? 1 : -1;
    const order = va < vb ? -1 : va > vb ? 1 : 0;
    return descending ? -order : order;
  });
}

function downloadButtons(jobId, candidate) {
  const status = h("div", { class: "small download-status", role: "status" });
  const buttons = candidate.formats.map((format) => {
    const button = h("button", { type: "button", class: "small-button", "data-format": format,
      title: `download the ${FORMAT_LABELS[format] || format} model as a zip` }, FORMAT_LABELS[format] || format);
    button.addEventListener("click", async () => {
      button.disabled = true;
      status.replaceChildren("downloading…");
      try {
        const path = `/v1/jobs/${encodeURIComponent(jobId)}/candidates/${encodeURIComponent(candidate.id)}/artifact`;
        const saved = await download(`${path}?format=${encodeURIComponent(format)}`,
          `slimformer-${candidate.id}-${format}.zip`);
        status.replaceChildren(`saved ${saved.name} (${fmt.count(saved.size)}B${saved.verified ? ", SHA-256 ✓" : ""})`);
        status.dataset.saved = saved.name;
      } catch (err) {
        status.replaceChildren(errorBox(`download failed: ${err.message}`));
      } finally {
        button.disabled = false;
      }
    });
    return button;
  });
  return [buttons.length ? buttons : h("span", { class: "muted" }, "not exported"), status];
}

// view: {jobId, metrics, jobRuntime, selected, sort: {id, descending}, onSelect, onSort}
export function candidateTable(candidates, view) {
  if (!candidates.length) return h("p", { class: "empty" }, "No candidates yet.");
  const cols = columns(view);
  const sortColumn = cols.find((c) => c.id === view.sort.id) || cols[2];
  const head = h("tr", {}, cols.map((col) => {
    const active = col.id === sortColumn.id;
    const button = h("button", { type: "button", class: "sort", title: col.hint || `sort by ${col.title}` },
      col.title, active ? (view.sort.descending ? " ▾" : " ▴") : "");
    button.addEventListener("click", () => view.onSort(col.id, active ? !view.sort.descending : col.numeric));
    return h("th", { class: col.numeric ? "num" : "", "aria-sort": active ? (view.sort.descending ? "descending"
      : "ascending") : null }, button);
  }), h("th", {}, "Download"));
  const rows = sorted(candidates, sortColumn, view.sort.descending).map((c) => {
    const row = h("tr", { "data-candidate-id": c.id, class: c.id === view.selected ? "selected" : "" },
      cols.map((col) => h("td", { class: col.numeric ? "num" : "" }, col.cell(c))),
      h("td", { class: "downloads" }, downloadButtons(view.jobId, c)));
    row.addEventListener("click", (event) => {
      if (!event.target.closest("button")) view.onSelect(c.id);
    });
    return row;
  });
  return h("div", { class: "table-scroll" },
    h("table", { class: "candidates", id: "candidate-table" }, h("thead", {}, head), h("tbody", {}, rows)));
}
