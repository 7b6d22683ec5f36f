// The submit form: teacher, data set (upload or pick), preset, budgets, and the usual advanced settings.
// An uploaded file goes to POST /v1/datasets first; the job then names its id.

import { getAll, request } from "./api.js";
import { errorBox, h } from "./dom.js";

const BUILTIN_TEACHERS = ["minilm-l6"];
const BUILTIN_DATASETS = ["rotten-tomatoes"];

const field = (label, input, hint) =>
  h("label", { class: "field" }, h("span", {}, label), input, hint ? h("small", { class: "muted" }, hint) : null);
const number = (id, attrs = {}) => h("input", { type: "number", id, name: id, step: "any", min: 0, ...attrs });
const choice = (id, options, selected) =>
  h("select", { id, name: id }, options.map((o) => h("option", { value: o, selected: o === selected }, o)));

const newKey = () => (globalThis.crypto?.randomUUID ? crypto.randomUUID()
  : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`);

// The spec from the form: empty fields are left out, so the server's defaults apply.
function specOf(form, dataset) {
  const value = (id) => form.querySelector(`#${id}`).value.trim();
  const num = (id) => (value(id) === "" ? undefined : Number(value(id)));
  const clean = (obj) => Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined && v !== ""));
  const corpus = value("corpus");
  return clean({
    name: value("job-name"), teacher: value("teacher"), dataset, preset: value("preset"), seed: num("seed"),
    corpus: corpus === "" || corpus === "none" ? null : corpus,
    budgets: clean({ latency_ms: num("budget-latency"), memory_mb: num("budget-memory"), params_m: num("budget-params") }),
    latency: clean({ seq_len: num("seq-len"), batch: num("batch"), threads: num("threads"), runtime: value("runtime") }),
    search: clean({ strategy: value("strategy"), trials: num("trials"), finalists: num("finalists") }),
  });
}

export function submitPage(root) {
  let stopped = false;
  let idempotencyKey = newKey(); // a double click or a retry makes one job, not two
  let uploaded = { file: null, id: null }; // a retry after a refused spec does not upload the file again
  const teachers = h("datalist", { id: "teacher-names" }, BUILTIN_TEACHERS.map((t) => h("option", { value: t })));
  const datasets = h("select", { id: "dataset", name: "dataset" },
    BUILTIN_DATASETS.map((d) => h("option", { value: d }, `${d} (built in)`)));
  const file = h("input", { type: "file", id: "dataset-file", name: "dataset-file", accept: ".csv,.jsonl,.json" });
  const problem = h("div", { id: "submit-problem" });
  const progress = h("p", { class: "muted", role: "status", id: "submit-status" });
  const submit = h("button", { type: "submit", class: "primary", id: "submit-job" }, "Submit job");

  const form = h("form", { class: "card submit", id: "submit-form", novalidate: true },
    h("h1", {}, "New compression job"),
    field("Name", h("input", { id: "job-name", maxlength: 200, placeholder: "e.g. reviews-small" })),
    field("Teacher", h("input", { id: "teacher", list: "teacher-names", required: true, value: BUILTIN_TEACHERS[0],
      maxlength: 1000 }), "a built-in teacher, the id of one you uploaded, or a folder the server allows"), teachers,
    h("fieldset", {}, h("legend", {}, "Data set"),
      field("Use", datasets, "a built-in set, or one you uploaded before"),
      field("or upload", file, "CSV or JSON lines with `text` and `label` columns; it is checked before it is kept")),
    field("Preset", choice("preset", ["tiny", "quick", "standard"], "quick"),
      "tiny: seconds, for trying things; quick: the default; standard: the best models"),
    h("fieldset", {}, h("legend", {}, "Budgets (empty: no limit)"),
      h("div", { class: "row" },
        field("Latency (ms)", number("budget-latency")), field("Memory (MB)", number("budget-memory")),
        field("Parameters (M)", number("budget-params")))),
    h("details", {}, h("summary", {}, "Advanced"),
      h("div", { class: "row" },
        field("Latency runtime", choice("runtime", ["torch", "onnxruntime"], "torch")),
        field("Sequence length", number("seq-len", { step: 1, min: 8, max: 512, placeholder: "128" })),
        field("Batch", number("batch", { step: 1, min: 1, placeholder: "1" })),
        field("Threads", number("threads", { step: 1, min: 1, placeholder: "1" }))),
      h("div", { class: "row" },
        field("Search", choice("strategy", ["nsga2", "tpe", "random", "ctnas", "sample"], "nsga2")),
        field("Trials", number("trials", { step: 1, min: 1, placeholder: "preset" })),
        field("Finalists", number("finalists", { step: 1, min: 1, max: 20, placeholder: "preset" })),
        field("Seed", number("seed", { step: 1, placeholder: "0" }))),
      field("Distillation corpus", h("input", { id: "corpus", value: "news" }), "empty: none (the task's own text)")),
    problem, progress, submit);
  form.addEventListener("input", () => { idempotencyKey = newKey(); });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.replaceChildren();
    submit.disabled = true;
    try {
      let dataset = datasets.value;
      const chosen = file.files[0];
      if (chosen && uploaded.file !== chosen) {
        progress.textContent = `Uploading ${chosen.name}…`;
        const body = new FormData();
        body.append("file", chosen);
        uploaded = { file: chosen, id: (await request("/v1/datasets", { method: "POST", form: body })).id };
      }
      if (chosen) dataset = uploaded.id;
      progress.textContent = "Submitting…";
      const job = await request("/v1/jobs", { method: "POST", json: specOf(form, dataset),
        headers: { "Idempotency-Key": idempotencyKey } });
      if (!stopped) location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (err) {
      progress.textContent = "";
      problem.replaceChildren(errorBox(err.message));
    } finally {
      submit.disabled = false;
    }
  });
  root.replaceChildren(form);

  // Fill the choices from the server: the tenant's uploaded data sets and teachers, every page by
  // cursor (a server older than GET /v1/teachers answers 404 there: the built-in names stay).
  getAll("/v1/datasets", 200).then((items) => {
    for (const d of items) datasets.append(h("option", { value: d.id }, `${d.name} (${d.rows} rows, uploaded)`));
  }).catch(() => {});
  getAll("/v1/teachers", 200).then((items) => {
    for (const t of items) {
      const kind = t.model_type ? ` (${t.model_type})` : "";
      teachers.append(h("option", { value: t.id }, `${t.name || t.id}${kind}, uploaded`));
    }
  }).catch(() => {});
  return () => { stopped = true; };
}
