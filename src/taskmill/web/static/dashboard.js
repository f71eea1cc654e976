// taskmill dashboard: confirmation of destructive actions, JSON checks in the queue
// form, and live updates by polling the JSON API. No framework, no build step.
// Task data is only ever written with textContent, never as HTML.
"use strict";

const POLL_MS = 2000;

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

function formatAge(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 120) return Math.round(seconds) + " s";
  if (seconds < 7200) return Math.round(seconds / 60) + " min";
  if (seconds < 172800) return (seconds / 3600).toFixed(1) + " h";
  return (seconds / 86400).toFixed(1) + " d";
}

function setText(root, selector, value) {
  const el = root.querySelector(selector);
  if (el && el.textContent !== String(value)) el.textContent = String(value);
}

function cell(text, tag) {
  const el = document.createElement(tag || "td");
  el.textContent = text === null || text === undefined ? "" : String(text);
  return el;
}

function preCell(text) {
  const td = document.createElement("td");
  const pre = document.createElement("pre");
  pre.textContent = text === null || text === undefined ? "" : String(text);
  td.appendChild(pre);
  return td;
}

// ------------------------------------------------------------------ overview
const SVG_NS = "http://www.w3.org/2000/svg";

function svgText(svg, x, y, text, cls) {
  const el = document.createElementNS(SVG_NS, "text");
  el.setAttribute("x", String(x));
  el.setAttribute("y", String(y));
  el.setAttribute("class", cls || "axis");
  el.textContent = text;
  svg.appendChild(el);
}

function renderChart(svg, buckets) {
  const NS = SVG_NS;
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const max = Math.max(1, ...buckets.map((b) => b.completed + b.failed));
  const width = 600 / buckets.length;
  buckets.forEach((b, i) => {
    const completed = (b.completed / max) * 110;
    const failed = (b.failed / max) * 110;
    [["completed", completed, 120 - completed], ["failed", failed, 120 - completed - failed]].forEach(
      ([kind, height, y]) => {
        if (height <= 0) return;
        const rect = document.createElementNS(NS, "rect");
        rect.setAttribute("class", kind);
        rect.setAttribute("x", String(i * width + 1));
        rect.setAttribute("y", String(y));
        rect.setAttribute("width", String(Math.max(1, width - 2)));
        rect.setAttribute("height", String(height));
        const title = document.createElementNS(NS, "title");
        title.textContent = kind + ": " + b[kind] + " (" + (buckets.length - i) + " min ago)";
        rect.appendChild(title);
        svg.appendChild(rect);
      }
    );
  });
  svgText(svg, 4, 12, max + " runs/min");
  svgText(svg, 4, 118, buckets.length + " min ago");
  svgText(svg, 560, 118, "now");
}

// Failed or timed-out runs as a share of the runs that ended, minute by minute; a
// minute in which nothing ended has no bar (no rate), unlike one with 0 % failures.
function renderFailureRate(svg, buckets) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const width = 600 / buckets.length;
  buckets.forEach((b, i) => {
    const total = b.completed + b.failed;
    if (!total) return;
    const rate = b.failed / total;
    const height = Math.max(1, rate * 100);
    const rect = document.createElementNS(SVG_NS, "rect");
    rect.setAttribute("class", rate > 0 ? "failed" : "completed");
    rect.setAttribute("x", String(i * width + 1));
    rect.setAttribute("y", String(110 - height));
    rect.setAttribute("width", String(Math.max(1, width - 2)));
    rect.setAttribute("height", String(height));
    const title = document.createElementNS(SVG_NS, "title");
    title.textContent = Math.round(rate * 100) + "% of " + total + " run(s) failed (" + (buckets.length - i) + " min ago)";
    rect.appendChild(title);
    svg.appendChild(rect);
  });
  svgText(svg, 4, 12, "100%");
  svgText(svg, 4, 118, buckets.length + " min ago");
  svgText(svg, 560, 118, "now");
  const ended = buckets.reduce((n, b) => n + b.completed + b.failed, 0);
  const failed = buckets.reduce((n, b) => n + b.failed, 0);
  const summary = document.getElementById("failure-summary");
  if (summary) {
    summary.textContent = ended
      ? failed + " of " + ended + " run(s) failed in the last hour (" + Math.round((100 * failed) / ended) + "%)"
      : "no run ended in the last hour";
  }
}

// A worker's running tasks as links to their pages, as overview.html draws them: all
// of them for a `--concurrency N` worker, with how many of its slots are busy. Redrawn
// only when they change, so that a link under the pointer is not replaced every poll.
function renderCurrentTasks(td, w, tasksUrl) {
  const ids = w.current_tasks || [];
  const busy = w.concurrency > 1 ? "(" + ids.length + " of " + w.concurrency + " slots busy, " + w.pool + ")" : "";
  const key = ids.join(",") + "|" + busy;
  if (td.dataset.shown === key) return;
  td.dataset.shown = key;
  td.textContent = "";
  ids.forEach((id, i) => {
    if (i) td.appendChild(document.createTextNode(", "));
    const a = document.createElement("a");
    a.href = tasksUrl + "/" + encodeURIComponent(id);
    a.textContent = String(id);
    td.appendChild(a);
  });
  if (busy) {
    td.appendChild(document.createTextNode(" "));
    td.appendChild(cell(busy, "small")).className = "slots";
  }
}

function renderOverview(root, data) {
  setText(root, '[data-field="now"]', data.now);
  Object.entries(data.statuses).forEach(([status, count]) =>
    setText(root, '[data-count="' + status + '"]', count)
  );
  setText(root, '[data-field="queue_depth"]', data.queue_depth);
  setText(root, '[data-field="oldest_due_age"]', formatAge(data.oldest_due_age));
  Object.entries(data.groups).forEach(([group, counts]) => {
    root.querySelectorAll("td[data-group]").forEach((td) => {
      if (td.dataset.group === group) td.textContent = String(counts[td.dataset.status] || 0);
    });
  });
  const svg = root.querySelector("#throughput");
  if (svg) renderChart(svg, data.throughput);
  const rates = root.querySelector("#failure-rate");
  if (rates) renderFailureRate(rates, data.throughput);
  const rows = new Map();
  root.querySelectorAll("tr[data-worker]").forEach((tr) => rows.set(tr.dataset.worker, tr));
  let changed = rows.size !== data.workers.length;
  data.workers.forEach((w) => {
    const tr = rows.get(w.name);
    if (!tr) { changed = true; return; }
    tr.className = w.alive ? "alive" : "dead";
    setText(tr, '[data-field="status"]', w.status);
    setText(tr, '[data-field="is_ticker"]', w.is_ticker ? "yes" : "");
    setText(tr, '[data-field="heartbeat_age"]', formatAge(w.heartbeat_age) + " ago");
    const running = tr.querySelector('[data-field="current_tasks"]');
    if (running) renderCurrentTasks(running, w, root.dataset.tasksUrl);
    setText(tr, '[data-field="runs"]', w.total + " / " + w.errors);
  });
  const notice = document.getElementById("workers-changed");
  if (notice) notice.classList.toggle("hidden", !changed);
}

// ---------------------------------------------------------------- task detail
const ACTIVE = ["QUEUED", "ASSIGNED", "RUNNING"];

// The output of the task's run, pushed by the server (server-sent events) while it
// runs; written with textContent only, so output that looks like HTML stays text.
function liveOutput(root) {
  const section = document.getElementById("live");
  const pre = document.getElementById("live-output");
  const state = document.getElementById("live-state");
  let source = null;
  let endedRun = null;
  function open() {
    if (source || !window.EventSource || !pre) return;
    section.classList.remove("hidden");
    source = new EventSource(root.dataset.stream);
    source.addEventListener("run", (e) => {
      const d = JSON.parse(e.data);
      pre.textContent = "";
      pre.dataset.run = String(d.run_id);
      state.textContent = "run " + d.run_id + " on " + (d.worker_name || "?") + ", live";
    });
    source.addEventListener("output", (e) => {
      const d = JSON.parse(e.data);
      if (typeof d.replace === "string") pre.textContent = d.replace;
      else pre.textContent += d.append;
      pre.scrollTop = pre.scrollHeight;
    });
    source.addEventListener("end", (e) => {
      const d = JSON.parse(e.data);
      endedRun = d.run_id;
      state.textContent = d.run_id === null ? "no run" : "run " + d.run_id + " ended" + (d.status ? ": " + d.status : "");
      source.close();
      source = null;
    });
    source.addEventListener("error", () => {
      if (source && source.readyState === EventSource.CLOSED) { state.textContent = "disconnected"; source = null; }
    });
  }
  // called with every poll of the task: a new run of a repeating or requeued task
  // opens the stream again
  function follow(task) {
    if (source || !ACTIVE.includes(task.status)) return;
    const latest = task.runs.length ? task.runs[0] : null;
    if (task.status === "RUNNING" && latest && latest.id === endedRun) return;
    open();
  }
  return { open, follow };
}

function renderGraph(root, dependencies) {
  if (!dependencies) return;
  dependencies.nodes.forEach((n) => {
    const node = root.querySelector('#dep-graph [data-node="' + n.id + '"]');
    if (!node) return;
    const status = n.status || "MISSING";
    const current = node.classList.contains("current") ? " current" : "";
    node.setAttribute("class", "node status-" + status.toLowerCase() + current);
    setText(node, '[data-field="node-status"]', status);
  });
  dependencies.edges.forEach((e) => {
    const edge = root.querySelector('#dep-graph [data-edge="' + e.child + "-" + e.parent + '"]');
    if (edge) edge.setAttribute("class", "edge " + (e.done ? "done" : "waiting"));
  });
}

function renderTask(root, task) {
  renderGraph(root, task.dependencies);
  if (root.live) root.live.follow(task);
  const badge = root.querySelector('[data-field="status"]');
  if (badge) {
    badge.textContent = task.status;
    badge.className = "badge status-" + String(task.status || "").toLowerCase();
  }
  setText(root, '[data-field="enabled"]', task.enabled ? "yes" : "no");
  setText(root, '[data-field="times"]', task.times_run + " / " + task.times_failed);
  setText(root, '[data-field="assigned_worker_name"]', task.assigned_worker_name || "");
  const tbody = root.querySelector("#runs tbody");
  if (!tbody) return;
  const fresh = document.createElement("tbody");
  task.runs.forEach((r) => {
    const tr = document.createElement("tr");
    [r.id, r.status, r.worker_name, r.start_time, r.duration].forEach((v) => tr.appendChild(cell(v)));
    [r.result, r.output, r.traceback].forEach((v) => tr.appendChild(preCell(v)));
    fresh.appendChild(tr);
  });
  if (!task.runs.length) {
    const tr = document.createElement("tr");
    const td = cell("no runs recorded");
    td.colSpan = 8;
    tr.appendChild(td);
    fresh.appendChild(tr);
  }
  tbody.replaceWith(fresh);
}

function startPolling(root, render) {
  const url = root.dataset.poll;
  let timer = null;
  async function tick() {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.status === 401) { window.location.reload(); return; }
      if (response.ok) render(root, await response.json());
    } catch (err) {
      // a restart of the dashboard or a network blip: try again next tick
    }
    timer = window.setTimeout(tick, POLL_MS);
  }
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) { window.clearTimeout(timer); } else { window.clearTimeout(timer); tick(); }
  });
  tick();
}

// ------------------------------------------------------------------- forms
function checkJsonFields(form) {
  let ok = true;
  form.querySelectorAll("textarea[data-json]").forEach((area) => {
    let message = "";
    try {
      const value = JSON.parse(area.value.trim() || (area.dataset.json === "list" ? "[]" : "{}"));
      const isList = Array.isArray(value);
      const isObject = value !== null && typeof value === "object" && !isList;
      if (area.dataset.json === "list" && !isList) message = "must be a JSON list";
      if (area.dataset.json === "object" && !isObject) message = "must be a JSON object";
    } catch (err) {
      message = "not valid JSON: " + err.message;
    }
    area.setCustomValidity(message);
    if (message) { area.reportValidity(); ok = false; }
  });
  return ok;
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("form[data-confirm]").forEach((form) =>
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    })
  );
  document.querySelectorAll("form").forEach((form) => {
    if (!form.querySelector("textarea[data-json]")) return;
    form.addEventListener("submit", (event) => { if (!checkJsonFields(form)) event.preventDefault(); });
    form.querySelectorAll("textarea[data-json]").forEach((a) => a.addEventListener("input", () => a.setCustomValidity("")));
  });
  const overview = document.getElementById("overview");
  if (overview) startPolling(overview, renderOverview);
  const task = document.getElementById("task");
  if (task) {
    task.live = liveOutput(task);
    if (ACTIVE.includes(task.dataset.status)) task.live.open();
    startPolling(task, renderTask);
  }
  const selectAll = document.getElementById("select-all");
  if (selectAll) {
    selectAll.addEventListener("change", () =>
      document.querySelectorAll('input[name="ids"]').forEach((box) => { box.checked = selectAll.checked; })
    );
  }
});

window.taskmill = { csrfToken };
