// The action page: inputs and output by type, attempts with errors, logs (tailed
// while the action runs), traces with token counts, resource use and the report.
import {
  FINAL, actionBadges, api, app, clear, el, elapsed, errorBox, fmtAbsolute, fmtBytes, fmtDuration,
  fmtTime, message, poll, renderValue, renderValues, shortId, showFatal, statusBadge,
} from "./heddle.js";

const RUN = app.dataset.run;
const ACTION = app.dataset.action;
const base = `/runs/${RUN}/actions/${ACTION}`;
let action = null;

function fact(label, value, title) {
  return el("div", {}, el("dt", { text: label }), el("dd", { title }, value));
}

// A cache hit links to the action that computed its value.
function cacheSource(a) {
  if (!a.source_run_id) return "hit";
  return el(
    "span", { id: "cache-source" }, "hit from ",
    el("a", { href: `/runs/${a.source_run_id}/actions/${a.source_action_id}`, class: "mono", text: `run ${shortId(a.source_run_id)} · action ${shortId(a.source_action_id)}` }),
  );
}

function renderHead(a) {
  document.title = `${a.task_name} · Heddle`;
  const crumbs = document.getElementById("crumbs");
  clear(
    crumbs,
    el("a", { href: "/", text: "Runs" }), " / ",
    el("a", { href: `/runs/${a.run_id}`, class: "mono", text: shortId(a.run_id) }),
    a.path.map((p) => [" / ", el("a", { href: `/runs/${a.run_id}/actions/${p.id}`, text: p.task_name.split(".").pop() })]),
    " / ", el("span", { text: a.task_name.split(".").pop() }),
  );
  document.getElementById("action-title").textContent = a.task_name;
  clear(document.getElementById("action-status"), statusBadge(a.status), actionBadges(a));
  const live = !FINAL.has(a.status);
  // Queued until the body of its first attempt starts (see the API's timing fields).
  const queue = a.started_at ? a.queue_duration : elapsed(a.queued_at, a.finished_at, null, live);
  clear(
    document.getElementById("action-facts"),
    fact("action", el("span", { class: "mono", text: a.id })),
    fact("kind", a.kind),
    a.group ? fact("group", a.group) : null,
    fact("attempts", String(a.attempts)),
    fact("queued", fmtTime(a.queued_at), fmtAbsolute(a.queued_at)),
    fact("queue time", fmtDuration(queue)),
    fact("run time", fmtDuration(elapsed(a.started_at, a.finished_at, a.duration, live))),
    fact("version", el("span", { class: "mono", text: a.task_version || "–" })),
    a.cached || a.cache_key ? fact("cache", a.cached ? cacheSource(a) : el("span", { class: "mono", text: shortId(a.cache_key) })) : null,
    a.depends_on.length ? fact("depends on", a.depends_on.map((d) => `${d.kind} ${d.name}`).join(", ")) : null,
  );
  clear(document.getElementById("action-error"), errorBox(a.error, a.status === "aborted" ? "Aborted" : "Failed"));
}

// -- attempts and resource use ---------------------------------------------------

function resourceText(key, value) {
  if (typeof value !== "number") return String(value);
  if (/rss|mem|bytes/i.test(key)) return fmtBytes(value);
  if (/sec|cpu|wall|queue|time/i.test(key)) return fmtDuration(value);
  return String(value);
}

function renderAttempts(list) {
  if (!list.length) return message("no attempts (a cache hit, a replayed step, or not started yet)", "muted");
  return el(
    "table",
    { class: "grid attempts" },
    el("thead", {}, el("tr", {}, ["#", "status", "started", "queue time", "run time", "worker", "resources"].map((h) => el("th", { text: h })))),
    el(
      "tbody",
      {},
      list.map((t) => [
        el(
          "tr",
          { class: `s-${t.status}` },
          el("td", { text: String(t.number) }),
          el("td", {}, statusBadge(t.status), t.error ? el("span", { class: `badge k-${t.error.kind}`, text: t.error.kind }) : null),
          el("td", { title: fmtAbsolute(t.started_at), text: t.started_at ? fmtTime(t.started_at) : "queued" }),
          el("td", { title: t.queued_at ? `queued at ${fmtAbsolute(t.queued_at)}` : "not recorded", text: fmtDuration(t.started_at ? t.queue_duration : elapsed(t.queued_at, null, null, !FINAL.has(t.status))) }),
          el("td", { text: fmtDuration(elapsed(t.started_at, t.finished_at, t.duration, !FINAL.has(t.status))) }),
          el("td", { class: "mono", text: t.worker || "–" }),
          el("td", {}, Object.keys(t.resources).length ? Object.entries(t.resources).map(([k, v]) => el("span", { class: "res" }, el("span", { class: "muted", text: `${k.replaceAll("_", " ")} ` }), resourceText(k, v))) : el("span", { class: "muted", text: "not measured" })),
        ),
        t.error ? el("tr", { class: "attempt-error" }, el("td", { colspan: "7" }, errorBox(t.error, `Attempt ${t.number}`))) : null,
      ]),
    ),
  );
}

// -- logs -------------------------------------------------------------------------

const logsEl = document.getElementById("logs");
const logSelect = document.getElementById("log-attempt");
let logState = { attempt: null, size: 0 };

async function loadLogs(append) {
  const q = new URLSearchParams();
  if (logState.attempt) q.set("attempt", String(logState.attempt));
  if (append) q.set("offset", String(logState.size));
  const log = await api(`${base}/logs?${q}`);
  if (!append) {
    clear(logSelect, log.attempts.map((n) => el("option", { value: String(n), text: `attempt ${n}`, selected: n === log.attempt })));
    logSelect.hidden = log.attempts.length < 2;
  }
  logState = { attempt: log.attempt, size: log.available ? log.size : 0 };
  if (!log.available) {
    logsEl.classList.add("muted");
    logsEl.textContent = FINAL.has(action.status) ? "no logs captured" : "no logs captured yet";
    return;
  }
  logsEl.classList.toggle("muted", !append && !log.text);
  if (!append && !log.text) {
    logsEl.textContent = FINAL.has(action.status) ? "(the attempt printed nothing)" : "(nothing printed yet)";
    logState.size = 0;
    return;
  }
  const stick = logsEl.scrollTop + logsEl.clientHeight >= logsEl.scrollHeight - 4;
  if (append) logsEl.append(log.text);
  else logsEl.textContent = (log.truncated ? `… (showing the last ${fmtBytes(log.text.length)})\n` : "") + log.text;
  if (stick || !append) logsEl.scrollTop = logsEl.scrollHeight;
}
logSelect.onchange = () => {
  logState = { attempt: Number(logSelect.value), size: 0 };
  loadLogs(false).catch(showFatal);
};

// -- traces -----------------------------------------------------------------------

// Token counts an LLM call reported, wherever they sit in its output.
function tokenCounts(view, found = {}) {
  if (!view) return found;
  const walk = (v, key) => {
    if (v && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) walk(x, k);
    } else if (typeof v === "number" && key && /tokens?$/i.test(key)) {
      found[key] = (found[key] || 0) + v;
    }
  };
  walk(view.kind === "json" ? view.value : view.items || null, null);
  return found;
}

function renderTraces(data) {
  if (!data.traces.length) return null;
  return el(
    "div",
    { class: "traces" },
    data.traces.map((t) => {
      const tokens = tokenCounts(t.output);
      for (const i of t.inputs) tokenCounts(i.value, tokens);
      return el(
        "details",
        { class: `trace s-${t.status}`, open: data.traces.length <= 5 },
        el(
          "summary",
          {},
          el("span", { class: `dot s-${t.status}` }),
          el("span", { class: "name mono", text: t.task_name }),
          actionBadges(t),
          Object.entries(tokens).map(([k, v]) => el("span", { class: "badge tokens", text: `${k.replaceAll("_", " ")}: ${v}` })),
          el("span", { class: "muted", text: ` ${fmtDuration(elapsed(t.started_at, t.finished_at, t.duration, false))}` }),
        ),
        el("div", { class: "cols" },
          el("div", {}, el("h4", { text: "inputs" }), renderValues(t.inputs, "no inputs")),
          el("div", {}, el("h4", { text: "output" }), renderValue(t.output))),
        errorBox(t.error),
      );
    }),
    data.total > data.traces.length ? message(`first ${data.traces.length} of ${data.total} traces`, "muted") : null,
  );
}

// -- page -------------------------------------------------------------------------

async function loadAll() {
  const [a, inputs, outputs, attempts, traces, report] = await Promise.all([
    api(base),
    api(`${base}/inputs`),
    api(`${base}/outputs`),
    api(`${base}/attempts`),
    api(`${base}/traces?limit=100`),
    api(`${base}/report`),
  ]);
  action = a;
  renderHead(a);
  clear(document.getElementById("inputs"), renderValues(inputs.values, "no inputs"));
  clear(document.getElementById("outputs"), renderValues(outputs.values, FINAL.has(a.status) ? "no output" : "not finished yet"));
  clear(document.getElementById("attempts"), renderAttempts(attempts.attempts));
  const tr = renderTraces(traces);
  document.getElementById("traces-card").hidden = !tr;
  clear(document.getElementById("traces"), tr);
  const frame = document.getElementById("report");
  document.getElementById("report-card").hidden = !report.available;
  if (report.available && frame.dataset.size !== String(report.size)) {
    frame.dataset.size = String(report.size);
    frame.src = report.url;
  }
}

(async () => {
  await loadAll();
  await loadLogs(false);
  if (!FINAL.has(action.status)) {
    let last = false;
    poll(async () => {
      const attempt = action.attempts;
      await loadAll();
      if (action.attempts !== attempt) logState = { attempt: null, size: 0 };
      await loadLogs(logState.size > 0);
    }, 1500, () => {
      const keep = !last;
      last = FINAL.has(action.status);
      return keep;
    });
  }
})().catch(showFatal);
