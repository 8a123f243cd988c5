// The runs list: filters, pages of 50, refreshed every 2 s.
import { FINAL, api, clear, el, elapsed, fmtAbsolute, fmtDuration, fmtTime, poll, shortId, showFatal, statusBadge } from "./heddle.js";

const PAGE = 50;
const form = document.getElementById("filters");
const body = document.querySelector("#runs tbody");
const empty = document.getElementById("runs-empty");
const range = document.getElementById("range");
const prev = document.getElementById("prev");
const next = document.getElementById("next");

const params = new URLSearchParams(location.search);
let offset = Number(params.get("offset") || 0);
for (const k of ["status", "task", "name"]) if (params.get(k)) form.elements[k].value = params.get(k);

function query() {
  const q = new URLSearchParams();
  for (const k of ["status", "task", "name"]) {
    const v = form.elements[k].value.trim();
    if (v) q.set(k, v);
  }
  if (offset) q.set("offset", String(offset));
  return q;
}

function row(r) {
  const href = `/runs/${r.id}`;
  const by = r.actions.by_status;
  const running = (by.running || 0) + (by.queued || 0);
  return el(
    "tr",
    { class: `run-row s-${r.display_status}`, dataset: { run: r.id }, onclick: (e) => {
      if (!(e.target instanceof HTMLAnchorElement)) location.href = href;
    } },
    el("td", {}, statusBadge(r.display_status)),
    el("td", {}, el("a", { href, text: r.name || "—", class: r.name ? "" : "muted" })),
    el("td", {}, el("a", { href, class: "mono", text: shortId(r.id) })),
    el("td", { class: "mono", text: r.root_task }),
    el("td", { title: fmtAbsolute(r.started_at), text: fmtTime(r.started_at || r.created_at) }),
    el("td", { class: "num", text: fmtDuration(elapsed(r.started_at || r.created_at, r.finished_at, r.duration, r.driver_alive && !FINAL.has(r.status))) }),
    el("td", { class: "num" }, String(r.actions.total), running ? el("span", { class: "muted", text: ` (${running} running)` }) : null),
    el("td", { class: `num ${r.failures ? "failures" : "muted"}`, text: String(r.failures) }),
  );
}

async function load() {
  const q = query();
  history.replaceState(null, "", q.toString() ? `?${q}` : location.pathname);
  q.set("limit", String(PAGE));
  const page = await api(`/runs?${q}`);
  clear(body, page.runs.map(row));
  empty.hidden = page.total > 0;
  const first = page.total ? page.offset + 1 : 0;
  range.textContent = `${first}–${page.offset + page.runs.length} of ${page.total}`;
  prev.disabled = page.offset === 0;
  next.disabled = page.offset + page.runs.length >= page.total;
}

let typing = null;
form.addEventListener("input", () => {
  clearTimeout(typing);
  typing = setTimeout(() => {
    offset = 0;
    load();
  }, 250);
});
form.addEventListener("submit", (e) => e.preventDefault());
prev.onclick = () => {
  offset = Math.max(0, offset - PAGE);
  load();
};
next.onclick = () => {
  offset += PAGE;
  load();
};

load().then(
  () => poll(load, 2000, () => true),
  showFatal,
);
