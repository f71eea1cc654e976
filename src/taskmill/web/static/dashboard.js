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
function renderChart(svg, buckets) {
  const NS = "http://www.w3.org/2000/svg";
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
    setText(tr, '[data-field="current_task"]', w.current_task || "");
    setText(tr, '[data-field="runs"]', w.total + " / " + w.errors);
  });
  const notice = document.getElementById("workers-changed");
  if (notice) notice.classList.toggle("hidden", !changed);
}

// ---------------------------------------------------------------- task detail
function renderTask(root, task) {
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
  if (task) startPolling(task, renderTask);
});

window.taskmill = { csrfToken };
