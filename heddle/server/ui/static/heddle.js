// Shared by every page: API calls (with the token), DOM building, formatting and
// rendering of stored values. Plain ES modules, no build step.

const TOKEN_KEY = "heddle.token";
let askingForToken = null;

export const app = document.getElementById("app");

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function token() {
  return localStorage.getItem(TOKEN_KEY);
}

function askForToken(refused) {
  if (askingForToken) return askingForToken;
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  document.getElementById("token-error").hidden = !refused;
  askingForToken = new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        localStorage.setItem(TOKEN_KEY, input.value.trim());
        input.value = "";
        askingForToken = null;
        showSignOut();
        resolve();
      },
      { once: true },
    );
  });
  dialog.showModal();
  input.focus();
  return askingForToken;
}

function showSignOut() {
  const b = document.getElementById("signout");
  b.hidden = !token();
  b.onclick = () => {
    localStorage.removeItem(TOKEN_KEY);
    location.reload();
  };
}
showSignOut();

// The token this page was served with; mutations send it back (see auth.py).
const CSRF = document.querySelector('meta[name="heddle-csrf"]')?.content || "";
// What conditional GETs hold: path -> {etag, text}. A poll sends the ETag back and a
// 304 answers from here, so an unchanged run costs the server almost nothing.
const held = new Map();
const HELD_MAX = 100;

function hold(path, etag, text) {
  held.delete(path);
  held.set(path, { etag, text });
  if (held.size > HELD_MAX) held.delete(held.keys().next().value);
}

// Fetch JSON from the API; asks for the token once when the server wants one.
// Each call returns a fresh object (callers may change it).
export async function api(path, options = {}) {
  const method = (options.method || "GET").toUpperCase();
  for (let tries = 0; ; tries++) {
    const headers = { Accept: "application/json", ...(options.headers || {}) };
    const t = token();
    if (t) headers.Authorization = `Bearer ${t}`;
    if (method !== "GET") headers["X-Heddle-CSRF"] = CSRF;
    const prior = method === "GET" ? held.get(path) : undefined;
    if (prior) headers["If-None-Match"] = prior.etag;
    const res = await fetch(`/api/v1${path}`, { ...options, headers, cache: "no-store" });
    if (res.status === 304 && prior) return JSON.parse(prior.text);
    if (res.status === 401 && tries < 5) {
      await askForToken(Boolean(t));
      continue;
    }
    const text = await res.text();
    let body = {};
    try {
      body = JSON.parse(text);
    } catch {
      body = {};
    }
    if (!res.ok) {
      throw new ApiError(res.status, body.detail ? String(body.detail) : `HTTP ${res.status}`);
    }
    const etag = res.headers.get("ETag");
    if (method === "GET" && etag) hold(path, etag, text);
    return body;
  }
}

// Build DOM without innerHTML: every string from the store is text, never markup.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "style") Object.assign(node.style, v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function clear(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
  return node;
}

export const FINAL = new Set(["succeeded", "failed", "aborted"]);

export function fmtDuration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${Math.round(s % 60)}s`;
  const h = Math.floor(m / 60);
  return `${h}h ${m % 60}m`;
}

export function fmtTime(t) {
  if (!t) return "–";
  const d = new Date(t * 1000);
  const now = Date.now() / 1000;
  const ago = now - t;
  if (ago < 60) return `${Math.max(0, Math.round(ago))}s ago`;
  if (ago < 3600) return `${Math.round(ago / 60)}m ago`;
  if (ago < 86400) return d.toLocaleTimeString();
  return d.toLocaleString();
}

export function fmtAbsolute(t) {
  return t ? new Date(t * 1000).toLocaleString() : "";
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function shortId(id) {
  return id ? id.slice(0, 12) : "";
}

// Display statuses beyond the stored ones (see RunSummary.display_status).
const STATUS_LABELS = { orphaned: "driver gone", recovering: "recovering" };
const STATUS_TITLES = {
  orphaned: "the process driving this run is gone: recover it to finish the run",
  recovering: "a recovery process is taking this run over",
};

export function statusBadge(status) {
  return el("span", { class: `status s-${status}`, text: STATUS_LABELS[status] || status, title: STATUS_TITLES[status] });
}

// Seconds an item took, or has taken so far while it is live (the API leaves a live
// item's duration null, so its answers stay valid until the store changes).
export function elapsed(start, end, duration, live) {
  if (duration !== null && duration !== undefined) return duration;
  if (!start) return null;
  if (end) return Math.max(0, end - start);
  return live ? Math.max(0, Date.now() / 1000 - start) : null;
}

// The badges that set special actions apart: cache hits, retries and error kinds.
export function actionBadges(a) {
  const out = [];
  if (a.cached) out.push(el("span", { class: "badge cached", text: "cached", title: "cache hit" }));
  if (a.attempts > 1)
    out.push(el("span", { class: "badge retried", text: `↻ ${a.attempts}`, title: `${a.attempts} attempts` }));
  const kind = a.error && a.error.kind;
  if (kind === "oom") out.push(el("span", { class: "badge oom", text: "OOM", title: a.error.message }));
  else if (kind === "system") out.push(el("span", { class: "badge system", text: "system", title: a.error.message }));
  else if (kind === "timeout") out.push(el("span", { class: "badge timeout", text: "timeout", title: a.error.message }));
  else if (a.status === "aborted") out.push(el("span", { class: "badge aborted", text: "aborted" }));
  if (a.kind && a.kind !== "task") out.push(el("span", { class: "badge kind", text: a.kind }));
  return out;
}

export function errorBox(err, title = "Error") {
  if (!err) return null;
  return el(
    "div",
    { class: `error-box k-${err.kind}` },
    el("div", { class: "error-head" }, el("strong", { text: `${title}: ${err.type}` }), el("span", { class: "badge", text: err.kind })),
    el("pre", { class: "error-message", text: err.message }),
    err.traceback ? el("details", {}, el("summary", { text: "traceback" }), el("pre", { class: "traceback", text: err.traceback })) : null,
  );
}

export function message(text, cls = "notice") {
  return el("p", { class: cls, text });
}

// -- values -----------------------------------------------------------------------

export function renderValue(v) {
  switch (v.kind) {
    case "none":
      return el("span", { class: "muted", text: "none" });
    case "scalar":
      return scalar(v);
    case "json":
      return jsonBlock(v.value, v.truncated);
    case "bytes":
      return el("span", { class: "typed" }, el("span", { class: "badge", text: "bytes" }), ` ${fmtBytes(v.size)} `, el("code", { class: "muted", text: v.hex + (v.size > 32 ? "…" : "") }));
    case "pickled":
      return el("span", { class: "typed pickled", title: "stored with cloudpickle; the server never unpickles" }, el("span", { class: "badge", text: "pickled" }), ` pickled (${v.size} bytes)`);
    case "list":
      return el("ol", { class: "vlist", start: "0" }, v.items.map((i) => el("li", {}, renderValue(i))), v.truncated ? el("li", { class: "muted", text: `… ${v.truncated} items in all` }) : null);
    case "dict":
      return el("dl", { class: "vdict" }, Object.entries(v.items).map(([k, i]) => [el("dt", { text: k }), el("dd", {}, renderValue(i))]));
    case "table":
      return tableValue(v);
    case "file":
    case "dir":
    case "blob":
      return blobValue(v);
    case "too_large":
      return el("span", { class: "muted", text: `value too large to show here (${fmtBytes(v.size)})` });
    case "unavailable":
      return el("span", { class: "error", text: v.message });
    default:
      return jsonBlock(v);
  }
}

function scalar(v) {
  const x = v.value;
  if (typeof x === "string") {
    const text = v.truncated ? `${x}… (${v.truncated} characters)` : x;
    return x.includes("\n") || x.length > 120 ? el("pre", { class: "str", text }) : el("code", { class: "str", text: JSON.stringify(text) });
  }
  return el("code", { class: `scalar t-${x === null ? "null" : typeof x}`, text: x === null ? "null" : String(x) });
}

function jsonBlock(value, truncated) {
  const compact = JSON.stringify(value);
  const text = compact.length <= 80 ? compact : JSON.stringify(value, null, 2);
  const pre = el("pre", { class: "json", text });
  const lines = text.split("\n").length;
  const note = truncated ? el("div", { class: "muted", text: `showing the first items of ${truncated}` }) : null;
  if (lines > 30) return el("details", {}, el("summary", { text: `JSON (${lines} lines)` }), pre, note);
  return el("div", {}, pre, note);
}

function download(v, label) {
  return el("a", { class: "download", href: v.download, download: v.name || "", text: label });
}

function blobValue(v) {
  const icon = v.kind === "dir" ? "📁" : v.kind === "file" ? "📄" : "◼";
  const label = v.name || (v.key ? shortId(v.key.slice(7)) : "");
  const meta = Object.keys(v.meta || {}).length ? el("details", {}, el("summary", { text: "metadata" }), el("pre", { class: "json", text: JSON.stringify(v.meta, null, 2) })) : null;
  const size = v.meta && typeof v.meta.size === "number" ? ` ${fmtBytes(v.meta.size)}` : v.size !== undefined ? ` inline, ${fmtBytes(v.size)}` : "";
  let files = null;
  if (v.files) {
    files = el(
      "ul",
      { class: "files" },
      v.files.files.map((f) => el("li", {}, el("a", { href: f.download, download: "", class: "mono", text: f.path }), el("span", { class: "muted", text: ` ${fmtBytes(f.size)}` }))),
      v.files.total > v.files.files.length ? el("li", { class: "muted", text: `… ${v.files.total} files in all` }) : null,
      v.files.error ? el("li", { class: "error", text: v.files.error }) : null,
    );
  }
  return el("div", { class: "typed blob" }, el("span", { class: "badge", text: v.format }), ` ${icon} `, el("span", { class: "mono", text: label }), size, " ", v.download ? download(v, v.kind === "dir" ? "manifest" : "download") : null, files, meta);
}

function tableValue(v) {
  const p = v.preview;
  const rows = p && p.num_rows !== undefined ? p.num_rows : v.meta.rows;
  const links = v.download ? [download(v, "download")] : (v.parts || []).map((part, i) => el("a", { class: "download", href: part.download, download: "", text: `part ${i + 1}` }));
  const head = el("div", { class: "typed" }, el("span", { class: "badge", text: v.format }), " table ", rows !== undefined ? `· ${rows} rows ` : "", p && p.columns ? `· ${p.columns.length} columns ` : "", links);
  if (!p) return head;
  if (p.error) return el("div", {}, head, el("p", { class: "muted", text: p.error }));
  const table = el(
    "table",
    { class: "grid small" },
    el("thead", {}, el("tr", {}, p.columns.map((c, i) => el("th", { title: p.types[i] }, c, el("div", { class: "muted", text: p.types[i] }))))),
    el("tbody", {}, p.rows.map((r) => el("tr", {}, r.map((c) => el("td", { text: c === null ? "null" : String(c) }))))),
  );
  const more = rows > p.rows.length ? el("div", { class: "muted", text: `first ${p.rows.length} of ${rows} rows` }) : null;
  return el("div", {}, head, el("div", { class: "table-scroll" }, table), more);
}

export function renderValues(values, emptyText) {
  if (!values.length) return message(emptyText, "muted");
  return el(
    "dl",
    { class: "values" },
    values.map((v) => [el("dt", { text: v.name }), el("dd", {}, renderValue(v.value))]),
  );
}

// Poll fn every ms while the page is visible and keep() returns true.
export function poll(fn, ms, keep) {
  const live = document.getElementById("live");
  let timer = null;
  const tick = async () => {
    if (!keep()) {
      live.hidden = true;
      return;
    }
    live.hidden = false;
    if (!document.hidden) {
      try {
        await fn();
      } catch (e) {
        console.warn("refresh failed", e);
      }
    }
    timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  return () => clearTimeout(timer);
}

export function showFatal(err) {
  const text = err instanceof ApiError ? err.message : `Something went wrong: ${err}`;
  clear(app, el("div", { class: "fatal" }, el("h1", { text: err.status === 404 ? "Not found" : "Error" }), el("p", { text }), el("a", { href: "/", text: "← all runs" })));
}
