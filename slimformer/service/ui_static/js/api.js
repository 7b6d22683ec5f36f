// The slimformer JSON API, called with the API key kept in sessionStorage (sent as `Authorization: Bearer`).

const KEY = "slimformer.apiKey";

export const getKey = () => sessionStorage.getItem(KEY);
export const setKey = (key) => sessionStorage.setItem(KEY, key);
export const clearKey = () => sessionStorage.removeItem(KEY);

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The API's error bodies: {"detail": "text"}, or for 422 a list of located problems.
function describe(body, status) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) {
    return body.detail
      .map((e) => {
        const where = (e.loc || []).filter((p) => p !== "body").join(".");
        return where ? `${where}: ${e.msg}` : e.msg;
      })
      .join("; ");
  }
  return `HTTP ${status}`;
}

export async function request(path, { method = "GET", json, form, headers = {}, key = getKey(), raw = false } = {}) {
  const sent = { ...headers };
  if (key) sent.Authorization = `Bearer ${key}`;
  let body;
  if (json !== undefined) {
    sent["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  const response = await fetch(path, { method, headers: sent, body });
  if (!response.ok) {
    let data = null;
    try {
      data = await response.json();
    } catch {
      // not JSON: the status says enough
    }
    if (response.status === 401 && key && key === getKey()) {
      clearKey();
      window.dispatchEvent(new CustomEvent("slimformer:logout", { detail: describe(data, 401) }));
    }
    throw new ApiError(response.status, describe(data, response.status));
  }
  return raw ? response : response.json();
}

export const get = (path) => request(path);

// Every item of a paged list (the server caps `limit`): by `next_cursor` where the server pages by
// cursor (each row once, even while rows are added), else by `offset`.
export async function getAll(path, max = 2000) {
  const items = [];
  let next = "";
  for (;;) {
    const page = await get(next ? `${path}${path.includes("?") ? "&" : "?"}${next}` : path);
    items.push(...page.items);
    if (!page.items.length || items.length >= max) return items;
    if ("next_cursor" in page) {
      if (!page.next_cursor) return items;
      next = `cursor=${encodeURIComponent(page.next_cursor)}`;
    } else {
      if (items.length >= page.total) return items;
      next = `offset=${items.length}`;
    }
  }
}

function filenameOf(disposition) {
  const match = /filename="?([^";]+)"?/i.exec(disposition || "");
  return match ? match[1] : null;
}

const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");

// Download with the key (a plain link cannot send it): fetch, check the SHA-256 the server sends
// where the browser can hash (secure contexts), then save through a blob URL.
export async function download(path, fallbackName) {
  const response = await request(path, { raw: true });
  const blob = await response.blob();
  const name = filenameOf(response.headers.get("Content-Disposition")) || fallbackName;
  const expected = response.headers.get("X-Content-SHA256");
  let verified = null;
  if (expected && globalThis.crypto && crypto.subtle) {
    verified = hex(await crypto.subtle.digest("SHA-256", await blob.arrayBuffer())) === expected;
    if (!verified) throw new ApiError(0, `${name}: the download does not match the server's SHA-256`);
  }
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return { name, size: blob.size, verified };
}
