// A job's page: live stage, progress, ETA and events (polled), then its Pareto chart and candidates.

import { ApiError, get, getAll, request } from "./api.js";
import { RUNTIMES, candidateLatency, drawChart, metricChoices, metricLabel } from "./chart.js";
import { errorBox, fill, fmt, h, progressBar, statusBadge } from "./dom.js";
import { isLive } from "./jobs.js";
import { candidateTable } from "./table.js";

const POLL_MS = 1500;
const CANDIDATES_EVERY_MS = 3000;

// How the job got its teacher (the API's teacher.source; the model card words it the same way).
const TEACHER_SOURCES = { given: "as given", fine_tuned: "fine-tuned by slimformer", head: "its own head" };

// "teacher: minilm-l6 (fine-tuned by slimformer)"; the source is left out where the API gives none.
export function teacherText(teacher) {
  const how = TEACHER_SOURCES[teacher.source] || teacher.source;
  return `teacher: ${teacher.name || "?"}${how ? ` (${how})` : ""}`;
}

// Reference points the API reports beside the candidates: `teacher`, `baseline`, `baselines` or
// `references` on the job (or its `result`), each with a latency and metrics named like a
// candidate's (latency_ms or latency_torch_ms..., dev_accuracy, test_accuracy, ...).
export function referencesOf(job) {
  const found = [];
  const add = (item, kind) => {
    if (!item || typeof item !== "object") return;
    const k = item.kind || kind;
    const label = k === "teacher" ? `teacher${item.name ? ` (${item.name})` : ""}` : item.name || k;
    found.push({ ...item, kind: k, label, title: k === "teacher" ? teacherText(item) : label });
  };
  for (const source of [job, job.result || {}]) {
    add(source.teacher, "teacher");
    add(source.baseline, "baseline");
    for (const b of source.baselines || []) add(b, "baseline");
    for (const r of source.references || []) add(r, "reference");
  }
  return found;
}

// The task metric the job optimises: as the worker resolved it, else as the spec names it.
const METRIC_NAMES = { accuracy: "accuracy", macro_f1: "macro-F1" };
export const jobMetricOf = (job) =>
  job.metric || (job.spec.metric in METRIC_NAMES ? job.spec.metric : null);

function metricText(job) {
  const metric = jobMetricOf(job);
  if (!metric) return "chosen from the class balance once the job starts";
  return `${METRIC_NAMES[metric]}${job.metric && !(job.spec.metric in METRIC_NAMES) ? " (auto)" : ""}`;
}

const budgetsText = (b) =>
  [b.latency_ms && `${b.latency_ms} ms`, b.memory_mb && `${b.memory_mb} MB`, b.params_m && `${b.params_m} M params`]
    .filter(Boolean).join(", ") || "none";

function summary(job) {
  const spec = job.spec;
  const shape = spec.latency || {};
  const rows = [
    ["Stage", h("span", { id: "job-stage" }, job.stage || (job.status === "queued" ? "waiting for a worker" : "–"))],
    ["Progress", h("div", { class: "progress-cell" }, progressBar(job.progress),
      h("span", { id: "job-progress" }, fmt.pct(job.progress)))],
    ["ETA", h("span", { id: "job-eta" }, isLive(job) ? (job.eta_seconds != null ? `about ${fmt.duration(job.eta_seconds)}`
      : "estimating…") : "–")],
    ["Teacher", job.teacher_id ? `${spec.teacher} (uploaded)` : spec.teacher],
    ["Data set", job.dataset_id ? `${spec.dataset} (uploaded)` : spec.dataset],
    ["Preset", spec.preset], ["Task metric", h("span", { id: "job-metric" }, metricText(job))],
    ["Budgets", budgetsText(spec.budgets || {})],
    ["Latency at", `batch ${shape.batch}, ${shape.seq_len} tokens, ${shape.threads} thread(s), ${shape.runtime}`],
    ["Submitted", fmt.time(job.created_at)], ["Started", fmt.time(job.started_at)],
    ["Finished", fmt.time(job.finished_at)], ["Attempts", String(job.attempts)],
  ];
  return [h("h2", {}, "Status"), h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    job.error ? errorBox(job.error) : null,
    job.cancel_requested && isLive(job) ? h("p", { class: "warn" }, "Cancel requested: the worker stops at its next check.")
      : null];
}

function eventList(events) {
  const items = [...events].reverse().map((e) => h("li", { class: `event ${e.level}` },
    h("time", { datetime: e.at }, fmt.clock(e.at)), e.stage ? h("span", { class: "tag" }, e.stage) : null, e.message));
  return [h("h2", {}, "Events ", h("span", { class: "muted small" }, "(latest 20, newest first)")),
    items.length ? h("ol", { class: "events", id: "job-events" }, items) : h("p", { class: "muted" }, "No events yet.")];
}

export function jobPage(root, jobId) {
  const base = `/v1/jobs/${encodeURIComponent(jobId)}`;
  let stopped = false;
  let timer = null;
  let job = null;
  let candidates = [];
  let candidatesAt = 0;
  let signature = "";
  const view = { runtime: null, metric: null, selected: null, sort: { id: null, descending: true } };

  const header = h("div", { class: "title-row" }, h("h1", {}, "Job"));
  const status = h("section", { class: "card", id: "job-summary" });
  const events = h("section", { class: "card", id: "job-events-card" });
  const controls = h("div", { class: "controls", id: "chart-controls" });
  const chart = h("div", { class: "chart", id: "chart" });
  const note = h("p", { class: "muted small", id: "chart-note" });
  const legend = h("p", { class: "legend small" },
    h("span", { class: "key pt" }), "candidate ", h("span", { class: "key pt front" }), "Pareto front ",
    h("span", { class: "key teacher" }), "teacher ", h("span", { class: "key baseline" }), "baseline ",
    h("span", { class: "key pt over" }), "over budget ", h("span", { class: "key int8" }), "int8 variant ",
    h("span", { class: "key rec" }), "recommended variant");
  const tableBox = h("div", { id: "candidates" });
  root.replaceChildren(header, h("div", { class: "columns" }, status, events),
    h("section", { class: "card", id: "pareto" }, h("h2", {}, "Pareto front: latency against the task metric"),
      controls, chart, legend, note),
    h("section", { class: "card" }, h("h2", {}, "Candidates"), tableBox));

  function renderHeader() {
    const cancel = isLive(job) && !job.cancel_requested
      ? h("button", { type: "button", id: "cancel-job", onclick: cancelJob }, "Cancel job") : null;
    fill(header, h("h1", {}, job.name || "(unnamed job)"), statusBadge(job.status),
      h("span", { class: "muted mono small" }, job.id),
      job.teacher ? h("span", { class: "muted small", id: "job-teacher" }, teacherText(job.teacher)) : null, cancel);
  }

  async function cancelJob() {
    if (!confirm("Cancel this job?")) return;
    try {
      await request(`${base}/cancel`, { method: "POST" });
    } catch (err) {
      alert(`Could not cancel: ${err.message}`);
    }
    poll();
  }

  function renderResults() {
    const jobRuntime = job.spec.latency?.runtime || "torch";
    const runtimes = RUNTIMES.filter((r) => candidates.some((c) => candidateLatency(c, r, jobRuntime) != null));
    const metrics = metricChoices(candidates);
    const jobMetric = `dev_${jobMetricOf(job) || "accuracy"}`;
    if (!view.runtime || !runtimes.some((r) => r.id === view.runtime)) {
      view.runtime = (runtimes.find((r) => r.id === jobRuntime) || runtimes[0] || RUNTIMES[0]).id;
    }
    if (!metrics.includes(view.metric)) view.metric = metrics.includes(jobMetric) ? jobMetric : metrics[0] || jobMetric;
    view.sort.id = view.sort.id || view.metric;
    const runtime = RUNTIMES.find((r) => r.id === view.runtime);

    controls.replaceChildren(
      h("div", { class: "segmented", role: "group", "aria-label": "runtime" }, h("span", { class: "muted" }, "Runtime:"),
        RUNTIMES.map((r) => {
          const available = runtimes.includes(r);
          return h("button", { type: "button", "data-runtime": r.id, "aria-pressed": String(r.id === view.runtime),
            disabled: !available, title: available ? `latency measured with ${r.label}` : "not measured for this job",
            onclick: () => { view.runtime = r.id; renderResults(); } }, r.label);
        })),
      h("label", { class: "muted" }, "Metric: ", (() => {
        const select = h("select", { id: "metric-select" },
          (metrics.length ? metrics : [view.metric]).map((m) => h("option", { value: m, selected: m === view.metric },
            metricLabel(m))));
        select.addEventListener("change", () => { view.metric = select.value; renderResults(); });
        return select;
      })()));

    // The job's own front (on its runtime and metric, within budget) once it is published; any
    // other view recomputes it. The API flags candidates, not variants, so a view with fp32 and
    // int8 points (onnxruntime) always recomputes: for an onnxruntime job the report stage did the same.
    const flagged = candidates.filter((c) => c.pareto).map((c) => c.id);
    const own = view.runtime === jobRuntime && view.runtime === "torch" && view.metric === jobMetric && flagged.length;
    const references = referencesOf(job);
    const drawn = drawChart(chart, { candidates, references, runtime, metric: view.metric, metrics, jobRuntime,
      front: own ? new Set(flagged) : null, selected: view.selected, onSelect: select });
    chart.dataset.points = String(drawn.points);

    const notes = [own ? "The front is the one the job chose." :
      `The front is recomputed for ${runtime.label} latency and ${metricLabel(view.metric)}${
        view.runtime === "torch" ? "" : ", each variant a point of its own"}.`];
    const unmeasured = candidates.length - drawn.shown;
    if (unmeasured > 0) notes.push(`${unmeasured} candidate(s) without these figures are in the table only.`);
    const absent = ["teacher", "baseline"].filter((kind) => !references.some((r) => r.kind === kind));
    if (absent.length) notes.push(`The API reports no ${absent.join(" or ")} figures for this job, so none is drawn.`);
    note.replaceChildren(notes.join(" "));

    tableBox.replaceChildren(candidateTable(candidates, { jobId, metrics, jobRuntime, selected: view.selected,
      sort: view.sort, onSelect: select,
      onSort: (id, descending) => { view.sort = { id, descending }; renderResults(); } }));
  }

  function select(id) {
    view.selected = id;
    renderResults();
    tableBox.querySelector(`tr[data-candidate-id="${CSS.escape(id)}"]`)?.scrollIntoView({ block: "nearest" });
  }

  async function loadCandidates() {
    candidates = await getAll(`${base}/candidates`);
    candidatesAt = Date.now();
    const now = candidates.map((c) => `${c.id}:${c.updated_at}:${c.pareto}`).join(",");
    if (now !== signature || !tableBox.childElementCount) {
      signature = now;
      renderResults();
    }
  }

  async function poll() {
    clearTimeout(timer);
    try {
      job = await get(base);
      if (stopped) return;
      renderHeader();
      fill(status, summary(job));
      fill(events, eventList(job.events));
      const live = isLive(job);
      const late = ["finalize", "report"].includes(job.stage);
      if (!live || !candidatesAt || (late && Date.now() - candidatesAt > CANDIDATES_EVERY_MS)) await loadCandidates();
      if (!stopped && live) timer = setTimeout(poll, POLL_MS);
    } catch (err) {
      if (stopped) return;
      if (err instanceof ApiError && err.status === 404) {
        root.replaceChildren(errorBox(`No job ${jobId} (or it is not yours).`), h("a", { href: "#/jobs" }, "All jobs"));
        return;
      }
      status.replaceChildren(errorBox(`Could not load the job: ${err.message}; retrying.`));
      timer = setTimeout(poll, POLL_MS * 3);
    }
  }
  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
