// The dashboard's entry: the login form, and a hash router over the pages
// (#/jobs, #/jobs/<id>, #/submit). Each page renders into <main> and returns a function that stops it.

import { clearKey, getKey, request, setKey } from "./api.js";
import { errorBox, h } from "./dom.js";
import { jobPage } from "./job.js";
import { jobsPage } from "./jobs.js";
import { submitPage } from "./submit.js";

const view = document.getElementById("view");
const nav = document.getElementById("nav");
let stopPage = null;
let loginMessage = null;

function loginPage(message) {
  const input = h("input", { type: "password", id: "api-key", name: "api-key", required: true,
    autocomplete: "off", placeholder: "sf_…", spellcheck: "false" });
  const problem = h("div", {});
  if (message) problem.append(errorBox(message));
  const form = h("form", { class: "card login", id: "login-form" },
    h("h1", {}, "Log in"),
    h("p", { class: "muted" }, "Paste an API key (", h("code", {}, "slimformer keys create"), " makes one). ",
      "It is kept in this browser tab only and sent as ", h("code", {}, "Authorization: Bearer"), "."),
    h("label", { for: "api-key" }, "API key"), input, problem,
    h("button", { type: "submit", class: "primary" }, "Log in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    problem.replaceChildren();
    try {
      await request("/v1/jobs?limit=1", { key });
      setKey(key);
      route();
    } catch (err) {
      problem.replaceChildren(errorBox(`That key was refused: ${err.message}`));
    }
  });
  view.replaceChildren(form);
  input.focus();
}

function route() {
  if (stopPage) stopPage();
  stopPage = null;
  if (!getKey()) {
    nav.hidden = true;
    loginPage(loginMessage);
    loginMessage = null;
    return;
  }
  nav.hidden = false;
  const [path, query] = (location.hash.replace(/^#/, "") || "/jobs").split("?");
  const params = new URLSearchParams(query || "");
  const job = /^\/jobs\/([^/]+)$/.exec(path);
  if (job) stopPage = jobPage(view, decodeURIComponent(job[1]));
  else if (path === "/submit") stopPage = submitPage(view);
  else stopPage = jobsPage(view, params);
}

window.addEventListener("hashchange", route);
window.addEventListener("slimformer:logout", (event) => {
  loginMessage = `The server refused the key (${event.detail}); log in again.`;
  route();
});
document.getElementById("logout").addEventListener("click", () => {
  clearKey();
  route();
});
route();
