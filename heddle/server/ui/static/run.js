// The run page: header with abort/recover, the action tree (groups folded, children
// paged 100 at a time), the timeline, and the run's inputs and output. Live while
// the run executes.
import {
  FINAL, actionBadges, api, app, clear, el, elapsed, errorBox, fmtAbsolute, fmtDuration, fmtTime,
  poll, renderValues, showFatal, statusBadge,
} from "./heddle.js";

const RUN = app.dataset.run;
const PAGE = 100;
let run = null;
let span = { start: 0, end: 1 };

// -- header -----------------------------------------------------------------------

function fact(label, value, title) {
  return el("div", {}, el("dt", { text: label }), el("dd", { title }, value));
}

function renderHead() {
  document.title = `${run.name || run.root_task} · Heddle`;
  document.getElementById("run-id").textContent = run.id;
  document.getElementById("run-title").textContent = run.name || run.root_task;
  clear(document.getElementById("run-status"), statusBadge(run.display_status), run.abort_requested && !FINAL.has(run.status) ? el("span", { class: "badge aborted", text: "abort requested" }) : null);
  const c = run.actions;
  const by = c.by_status;
  clear(
    document.getElementById("run-facts"),
    fact("root task", el("span", { class: "mono", text: run.root_task })),
    fact("started", fmtTime(run.started_at || run.created_at), fmtAbsolute(run.started_at || run.created_at)),
    fact("duration", fmtDuration(elapsed(run.started_at || run.created_at, run.finished_at, run.duration, run.driver_alive))),
    fact("actions", `${c.total - c.traces}`),
    fact("succeeded", String(by.succeeded || 0)),
    fact("running", String((by.running || 0) + (by.queued || 0))),
    fact("failed", el("span", { class: by.failed ? "failures" : "", text: String(by.failed || 0) })),
    fact("cached", String(c.cached)),
    fact("retried", String(c.retried)),
    fact("traces", String(c.traces)),
    fact("executor", run.executor),
  );
  clear(document.getElementById("run-error"), errorBox(run.error, "Run failed"));
  const recovering = run.display_status === "recovering";
  document.getElementById("abort").hidden = FINAL.has(run.status) || recovering;
  document.getElementById("recover").hidden = recovering || !(run.status === "failed" || run.status === "aborted" || run.display_status === "orphaned");
  renderRecovery();
  clear(document.getElementById("run-inputs"), renderValues(run.inputs, "no inputs"));
  clear(document.getElementById("run-output"), run.output.kind === "none" ? el("span", { class: "muted", text: "no output yet" }) : renderValues([{ name: "o0", value: run.output }], ""));
  span = { start: run.started_at || run.created_at, end: Math.max(run.finished_at || Date.now() / 1000, (run.started_at || run.created_at) + 0.001) };
}

// What became of a recovery this server started: shown until the page is left.
function renderRecovery() {
  const r = run.recovery;
  const notice = document.getElementById("run-notice");
  if (!r || notice.dataset.verb === "abort") return;
  notice.hidden = false;
  notice.dataset.verb = "recover";
  const failed = !r.running && r.exit_code !== 0 && FINAL.has(run.status);
  notice.classList.toggle("error", failed);
  if (r.running) notice.textContent = `recovering in process ${r.pid}…`;
  else if (r.exit_code === 0) notice.textContent = `recovered by process ${r.pid}`;
  else if (failed) notice.textContent = `recovery process ${r.pid} exited with code ${r.exit_code}${r.message ? `: ${r.message}` : ""}`;
  else notice.textContent = `recovery process ${r.pid} exited with code ${r.exit_code}`;
}

async function control(verb) {
  const notice = document.getElementById("run-notice");
  if (!confirm(`${verb[0].toUpperCase()}${verb.slice(1)} run ${run.id}?`)) return;
  notice.hidden = false;
  notice.dataset.verb = verb;
  notice.classList.remove("error");
  notice.textContent = `${verb}…`;
  try {
    const res = await api(`/runs/${run.id}/${verb}`, { method: "POST" });
    notice.textContent = res.message;
    if (verb === "recover") delete notice.dataset.verb;
  } catch (e) {
    notice.textContent = `${verb} failed: ${e.message}`;
    notice.classList.add("error");
  }
  await refresh();
  startPolling();
}
document.getElementById("abort").onclick = () => control("abort");
document.getElementById("recover").onclick = () => control("recover");

// -- the action tree -----------------------------------------------------------------
// A level is the children of one action in one group (or in none). Levels load a
// page at a time; only expanded levels are fetched, so a run of any size opens fast.

const levels = new Map(); // key -> {parent, group, data, limit}
const expanded = new Set(); // level keys that are open
const treeEl = document.getElementById("tree");
let rootAction = null;

const levelKey = (parent, group) => `${parent}|${group || ""}`;

async function fetchLevel(parent, group, limit) {
  const q = new URLSearchParams({ parent, offset: "0", limit: String(Math.min(limit, 500)) });
  if (group) q.set("group", group);
  return api(`/runs/${RUN}/tree?${q}`);
}

async function openLevel(parent, group) {
  const key = levelKey(parent, group);
  expanded.add(key);
  if (!levels.has(key)) {
    const data = await fetchLevel(parent, group, PAGE);
    levels.set(key, { parent, group, data, limit: PAGE });
  }
  renderTree();
}

async function loadMore(key) {
  const level = levels.get(key);
  const q = new URLSearchParams({ parent: level.parent, offset: String(level.data.actions.length), limit: String(PAGE) });
  if (level.group) q.set("group", level.group);
  const more = await api(`/runs/${RUN}/tree?${q}`);
  level.data.actions.push(...more.actions);
  level.data.total = more.total;
  level.limit = level.data.actions.length;
  renderTree();
}

function toggle(key, parent, group) {
  if (expanded.has(key)) {
    expanded.delete(key);
    renderTree();
  } else {
    openLevel(parent, group).catch(showFatal);
  }
}

function bar(a) {
  const total = span.end - span.start;
  const start = a.started_at || a.queued_at;
  const end = a.finished_at || (FINAL.has(a.status) ? start : Date.now() / 1000);
  const left = Math.max(0, ((start - span.start) / total) * 100);
  const width = Math.max(0.3, ((end - start) / total) * 100);
  return el("div", { class: "mini" }, el("div", { class: `bar s-${a.status}${a.cached ? " cached" : ""}`, style: { left: `${left}%`, width: `${Math.min(width, 100 - left)}%` }, title: fmtDuration(end - start) }));
}

function countsText(c) {
  const n = c.total - c.traces;
  const parts = [`${n}`];
  const by = c.by_status;
  if (by.failed) parts.push(`${by.failed} failed`);
  const live = (by.running || 0) + (by.queued || 0);
  if (live) parts.push(`${live} running`);
  return parts.join(" · ");
}

function actionRow(a, depth) {
  const key = levelKey(a.id, null);
  const kids = a.children ? a.children.total - a.children.traces : 0;
  const open = expanded.has(key);
  return el(
    "div",
    { class: `row s-${a.status}`, role: "treeitem", "aria-expanded": kids ? String(open) : null, dataset: { id: a.id, kind: "action" } },
    el(
      "div",
      { class: "cell-name", style: { paddingLeft: `${depth * 18}px` } },
      kids ? el("button", { class: "twisty", "aria-label": open ? "fold" : "unfold", text: open ? "▾" : "▸", onclick: () => toggle(key, a.id, null) }) : el("span", { class: "twisty-space" }),
      el("span", { class: `dot s-${a.status}`, title: a.status }),
      el("a", { class: "name", href: `/runs/${RUN}/actions/${a.id}`, text: a.task_name }),
      actionBadges(a),
      a.error && a.status === "failed" ? el("span", { class: "err-inline", text: `${a.error.type}: ${a.error.message}`.slice(0, 140), title: a.error.message }) : null,
    ),
    el("div", { class: "cell-kids muted", text: kids ? countsText(a.children) : "" }),
    el("div", { class: "cell-dur", text: fmtDuration(elapsed(a.started_at, a.finished_at, a.duration, !FINAL.has(a.status) && run.driver_alive)) }),
    el("div", { class: "cell-bar" }, bar(a)),
  );
}

function groupRow(parent, g, depth) {
  const key = levelKey(parent, g.name);
  const open = expanded.has(key);
  const by = g.counts.by_status;
  return el(
    "div",
    { class: "row group", role: "treeitem", "aria-expanded": String(open), dataset: { group: g.name, kind: "group" } },
    el(
      "div",
      { class: "cell-name", style: { paddingLeft: `${depth * 18}px` } },
      el("button", { class: "twisty", "aria-label": open ? "fold" : "unfold", text: open ? "▾" : "▸", onclick: () => toggle(key, parent, g.name) }),
      el("span", { class: "folder", text: "▤" }),
      el("span", { class: "name", text: g.label }),
      by.failed ? el("span", { class: "badge failed-count", text: `${by.failed} failed` }) : null,
      g.counts.cached ? el("span", { class: "badge cached", text: `${g.counts.cached} cached` }) : null,
    ),
    el("div", { class: "cell-kids muted", text: countsText(g.counts) }),
    el("div", { class: "cell-dur" }),
    el("div", { class: "cell-bar" }, progress(g.counts)),
  );
}

function progress(c) {
  const by = c.by_status;
  const total = Math.max(1, c.total);
  const seg = (s) => el("span", { class: `seg s-${s}`, style: { width: `${((by[s] || 0) / total) * 100}%` } });
  return el("div", { class: "progress", title: Object.entries(by).map(([k, v]) => `${k}: ${v}`).join(", ") }, ["succeeded", "failed", "running", "queued", "aborted"].map(seg));
}

function renderLevel(parent, group, depth, out) {
  const key = levelKey(parent, group);
  const level = levels.get(key);
  if (!level) return;
  const d = level.data;
  for (const g of d.groups) {
    out.push(groupRow(parent, g, depth));
    if (expanded.has(levelKey(parent, g.name))) renderLevel(parent, g.name, depth + 1, out);
  }
  for (const a of d.actions) {
    out.push(actionRow(a, depth));
    if (expanded.has(levelKey(a.id, null))) renderLevel(a.id, null, depth + 1, out);
  }
  const left = d.total - d.actions.length;
  if (left > 0) {
    out.push(
      el("div", { class: "row more", style: { paddingLeft: `${depth * 18 + 22}px` } },
        el("button", { class: "link load-more", text: `show ${Math.min(PAGE, left)} more (${left} not shown)`, onclick: () => loadMore(key).catch(showFatal) })),
    );
  }
  if (!d.groups.length && !d.actions.length) out.push(el("div", { class: "row muted", style: { paddingLeft: `${depth * 18 + 22}px` }, text: "no child actions yet" }));
}

function renderTree() {
  if (!rootAction) return;
  const rows = [
    el("div", { class: "row head" }, el("div", { class: "cell-name", text: "action" }), el("div", { class: "cell-kids", text: "children" }), el("div", { class: "cell-dur", text: "duration" }), el("div", { class: "cell-bar", text: "timeline" })),
    actionRow(rootAction, 0),
  ];
  if (expanded.has(levelKey(rootAction.id, null))) renderLevel(rootAction.id, null, 1, rows);
  clear(treeEl, rows);
}

async function refreshTree() {
  // Reload every open level (as many rows as are shown), then redraw.
  const open = [...levels.entries()].filter(([key]) => expanded.has(key));
  const fresh = await Promise.all(open.map(([, l]) => fetchLevel(l.parent, l.group, Math.max(l.limit, PAGE))));
  open.forEach(([, l], i) => {
    l.data = fresh[i];
    if (l.parent === rootAction.id && !l.group) rootAction = fresh[i].parent;
  });
  // Folded levels are dropped, so opening them again shows fresh rows.
  for (const key of [...levels.keys()]) if (!expanded.has(key)) levels.delete(key);
  renderTree();
}

async function initTree() {
  const data = await fetchLevel(run.root_action_id, null, PAGE);
  rootAction = data.parent;
  const key = levelKey(rootAction.id, null);
  levels.set(key, { parent: rootAction.id, group: null, data, limit: PAGE });
  expanded.add(key);
  renderTree();
}

// -- the timeline --------------------------------------------------------------------

const timelineEl = document.getElementById("timeline");
let timeline = null;
let timelineLimit = 200;

async function loadTimeline() {
  timeline = await api(`/runs/${RUN}/timeline?offset=0&limit=${Math.min(timelineLimit, 500)}`);
  renderTimeline();
}

// The segments of one action on the timeline: for each attempt the time it waited
// for resources (queued, lighter) and then the time its body ran. Attempts written
// before queue times were recorded (queued_at null) show only their running part.
function segments(a, pct, now) {
  const live = !FINAL.has(a.status);
  const segs = [];
  const width = (from, to) => `max(2px, calc(${pct(to)} - ${pct(from)}))`;
  const queued = (from, to, label) =>
    segs.push(el("div", { class: "seg queue", style: { left: pct(from), width: `calc(${pct(to)} - ${pct(from)})` }, title: `${label}queued ${fmtDuration(to - from)}` }));
  const spans = a.attempt_spans;
  if (!spans.length) {
    // No attempt yet (still waiting, a cache hit, a recorded step): queued since created.
    if (live && !a.started_at) queued(a.queued_at, now, "");
    else {
      const start = a.started_at || a.queued_at;
      const end = a.finished_at || (live ? now : start);
      segs.push(el("div", { class: `seg run s-${a.status}${a.cached ? " cached" : ""}`, style: { left: pct(start), width: width(start, end) }, title: `${a.status} ${fmtDuration(end - start)}` }));
    }
    return segs;
  }
  const many = spans.length > 1;
  for (const s of spans) {
    const label = many ? `attempt ${s.number}: ` : "";
    const attemptLive = !FINAL.has(s.status);
    if (s.queued_at) {
      const until = s.started_at || s.finished_at || (attemptLive ? now : s.queued_at);
      if (until > s.queued_at) queued(s.queued_at, until, label);
    }
    if (!s.started_at) continue;
    const end = s.finished_at || (attemptLive ? now : s.started_at);
    const cls = many ? `seg attempt s-${s.status}` : `seg run s-${a.status}${a.cached ? " cached" : ""}`;
    const error = s.error ? ` — ${s.error.type}: ${s.error.message}` : "";
    segs.push(el("div", { class: cls, style: { left: pct(s.started_at), width: width(s.started_at, end) }, title: `${label}${s.status} ${fmtDuration(end - s.started_at)}${error}` }));
  }
  return segs;
}

function renderTimeline() {
  const t = timeline;
  const now = Date.now() / 1000;
  const end = t.end === null ? now : t.end;
  const total = Math.max(end - t.start, 0.001);
  const pct = (x) => `${Math.max(0, Math.min(100, ((x - t.start) / total) * 100))}%`;
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => el("span", { class: "tick", style: { left: `${f * 100}%` }, text: fmtDuration(f * total) }));
  const rows = t.items.map((a) => {
    const live = !FINAL.has(a.status) && run.driver_alive;
    return el(
      "div",
      { class: `trow s-${a.status}`, dataset: { id: a.id } },
      el("div", { class: "tlabel" }, el("span", { class: `dot s-${a.status}` }), el("a", { href: `/runs/${RUN}/actions/${a.id}`, text: a.task_name }), actionBadges(a)),
      el("div", { class: "ttrack" }, segments(a, pct, now)),
      el("div", { class: "tdur", title: a.queue_duration ? `queued ${fmtDuration(a.queue_duration)}` : null, text: fmtDuration(elapsed(a.started_at, a.finished_at, a.duration, live)) }),
    );
  });
  const left = t.total - t.items.length;
  clear(
    timelineEl,
    el("div", { class: "trow axis" }, el("div", { class: "tlabel muted", text: `${t.total} actions, in start order` }), el("div", { class: "ttrack" }, ticks), el("div", { class: "tdur" })),
    rows,
    left > 0 ? el("button", { class: "link load-more", text: `show ${Math.min(200, left)} more (${left} not shown)`, onclick: () => { timelineLimit += 200; loadTimeline().catch(showFatal); } }) : null,
  );
}

// -- tabs, refresh ---------------------------------------------------------------------

let tab = "tree";
for (const b of document.querySelectorAll("[data-tab]")) {
  b.onclick = () => {
    tab = b.dataset.tab;
    for (const o of document.querySelectorAll("[data-tab]")) o.setAttribute("aria-selected", String(o === b));
    for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== `tab-${tab}`;
    if (tab === "timeline") loadTimeline().catch(showFatal);
  };
}

async function refresh() {
  run = await api(`/runs/${RUN}`);
  renderHead();
  await refreshTree();
  if (tab === "timeline") await loadTimeline();
}

// Whether the page should keep polling: the run is live, or being recovered.
const settled = () => FINAL.has(run.status) && !(run.recovery && run.recovery.running);

let stopPolling = null;
function startPolling() {
  if (stopPolling) stopPolling();
  let lastFinal = false;
  stopPolling = poll(refresh, 1500, () => {
    // One last refresh after the run ends, then stop.
    const keep = !lastFinal;
    lastFinal = settled();
    return keep;
  });
}

(async () => {
  run = await api(`/runs/${RUN}`);
  renderHead();
  await initTree();
  if (!settled()) startPolling();
})().catch(showFatal);
