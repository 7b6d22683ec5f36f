// The jobs list: newest first, a status filter, pages, refreshed while any job on the page is live.

import { get } from "./api.js";
import { errorBox, fmt, h, progressBar, statusBadge } from "./dom.js";

const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
const REFRESH_MS = 2000;

export const isLive = (job) => job.status === "queued" || job.status === "running";

function jobsHref(offset, status) {
  const params = new URLSearchParams();
  if (offset) params.set("offset", offset);
  if (status) params.set("status", status);
  const query = params.toString();
  return `#/jobs${query ? `?${query}` : ""}`;
}

function jobRow(job) {
  const when = isLive(job)
    ? job.eta_seconds != null ? `about ${fmt.duration(job.eta_seconds)} left` : "–"
    : fmt.time(job.finished_at);
  return h("tr", { "data-job-id": job.id },
    h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(job.id)}` }, job.name || "(unnamed)"),
      h("div", { class: "muted mono small" }, job.id)),
    h("td", {}, statusBadge(job.status)),
    h("td", {}, job.stage || "–"),
    h("td", {}, h("div", { class: "progress-cell" }, progressBar(job.progress),
      h("span", { class: "small" }, fmt.pct(job.progress)))),
    h("td", {}, job.spec.teacher, h("div", { class: "muted small" }, `${job.spec.preset} preset`)),
    h("td", {}, fmt.time(job.created_at)),
    h("td", {}, when));
}

export function jobsPage(root, params) {
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  const status = STATUSES.includes(params.get("status")) ? params.get("status") : "";
  let timer = null;
  let stopped = false;

  const filter = h("select", { id: "status-filter", "aria-label": "status" },
    h("option", { value: "" }, "all statuses"),
    STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)));
  filter.addEventListener("change", () => { location.hash = jobsHref(0, filter.value); });
  const body = h("div", { id: "jobs" }, h("p", { class: "muted" }, "Loading jobs…"));
  root.replaceChildren(
    h("div", { class: "title-row" }, h("h1", {}, "Jobs"), filter,
      h("a", { class: "button primary", href: "#/submit" }, "New job")),
    body);

  function render(page) {
    if (!page.items.length) {
      body.replaceChildren(h("p", { class: "empty" }, status ? `No ${status} jobs. ` : "No jobs yet. ",
        h("a", { href: "#/submit" }, "Submit one"), "."));
      return;
    }
    const last = page.offset + page.items.length;
    body.replaceChildren(
      h("table", { class: "jobs" },
        h("thead", {}, h("tr", {}, ["Job", "Status", "Stage", "Progress", "Teacher", "Submitted", "Finished / ETA"]
          .map((t) => h("th", {}, t)))),
        h("tbody", {}, page.items.map(jobRow))),
      h("div", { class: "pager" },
        page.offset > 0 ? h("a", { href: jobsHref(Math.max(0, page.offset - page.limit), status) }, "← newer") : null,
        h("span", { class: "muted" }, `${page.offset + 1}–${last} of ${page.total}`),
        last < page.total ? h("a", { href: jobsHref(last, status) }, "older →") : null));
  }

  async function load() {
    try {
      const page = await get(`/v1/jobs?offset=${offset}${status ? `&status=${status}` : ""}`);
      if (stopped) return;
      render(page);
      if (page.items.some(isLive)) timer = setTimeout(load, REFRESH_MS);
    } catch (err) {
      if (!stopped) body.replaceChildren(errorBox(`Could not load the jobs: ${err.message}`));
    }
  }
  load();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
