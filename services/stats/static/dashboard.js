// The TRAVI dashboard: reads the admin API with the page's cookie and draws it. No libraries.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const REFRESH_MS = 10000;
const RECENT = 20;
const STEP_COLORS = {
  validate_target: "#6c8ebf", pause_traffic: "#9673a6", drain_connections: "#d6a03a",
  switch_version: "#2f6fdf", verify_health: "#2e9d5b", resume_traffic: "#47a3a3",
  cleanup: "#a36b47", notify: "#8a93a3",
};
const TOTALS = [
  ["total", "Total"], ["pending", "Pending"], ["inProgress", "In progress"],
  ["completed", "Completed"], ["failed", "Failed"], ["cancelled", "Cancelled"],
  ["automaticCount", "Automatic"], ["manualCount", "Manual"],
];

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function svg(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  return node;
}

async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (response.status === 401) {
    window.location.assign("/");
    throw new Error("signed out");
  }
  if (!response.ok) throw new Error(`${path} failed with HTTP ${response.status}`);
  return response.json();
}

function formatMs(value) {
  if (value === null || value === undefined) return "–";
  if (value < 1000) return `${Math.round(value)} ms`;
  return `${(value / 1000).toFixed(1)} s`;
}

function formatTime(value) {
  return value ? new Date(value).toLocaleString() : "–";
}

function renderTotals(stats) {
  const list = document.getElementById("totals");
  list.replaceChildren();
  const rows = TOTALS.map(([key, label]) => [label, stats[key]]);
  rows.push(["Success rate", stats.successRate === null ? "–" : `${(stats.successRate * 100).toFixed(1)} %`]);
  rows.push(["Average duration", formatMs(stats.avgDurationMs)]);
  for (const [label, value] of rows) {
    const card = element("div");
    card.append(element("dt", label), element("dd", value));
    card.dataset.metric = label;
    list.append(card);
  }
}

function renderChart(breakdown) {
  const chart = document.getElementById("trigger-chart");
  chart.replaceChildren();
  const entries = Object.entries(breakdown).sort((a, b) => b[1] - a[1]);
  chart.dataset.bars = String(entries.length);
  if (entries.length === 0) {
    chart.append(element("p", "No rollbacks yet.", "muted"));
    return;
  }
  const rowHeight = 28, labelWidth = 140, barWidth = 420, countWidth = 50;
  const width = labelWidth + barWidth + countWidth;
  const height = entries.length * rowHeight + 8;
  const max = Math.max(...entries.map(([, count]) => count));
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
                            "aria-label": "Rollbacks by trigger" });
  entries.forEach(([trigger, count], index) => {
    const y = index * rowHeight + 4;
    const label = svg("text", { x: labelWidth - 8, y: y + 17, "text-anchor": "end",
                                "font-size": 13, fill: "#1d2330" });
    label.textContent = trigger;
    const length = Math.max(2, Math.round((count / max) * barWidth));
    const bar = svg("rect", { x: labelWidth, y, width: length, height: rowHeight - 8, rx: 3,
                              fill: "#2f6fdf", "data-trigger": trigger });
    const value = svg("text", { x: labelWidth + length + 6, y: y + 17, "font-size": 13,
                                fill: "#1d2330" });
    value.textContent = String(count);
    root.append(label, bar, value);
  });
  chart.append(root);
}

function renderLegend() {
  const legend = document.getElementById("legend");
  legend.replaceChildren();
  for (const [name, color] of Object.entries(STEP_COLORS)) {
    const item = element("span", name);
    const swatch = element("i");
    swatch.style.background = color;
    item.prepend(swatch);
    legend.append(item);
  }
}

function planDuration(plan) {
  if (plan.durationMs !== null && plan.durationMs !== undefined) return plan.durationMs;
  return (plan.steps || []).reduce((sum, step) => sum + (step.durationMs || 0), 0);
}

function renderTimeline(plans) {
  const list = document.getElementById("timeline");
  list.replaceChildren();
  if (plans.length === 0) {
    list.append(element("li", "No rollbacks yet.", "muted"));
    return;
  }
  const longest = Math.max(1, ...plans.map(planDuration));
  for (const plan of plans) {
    const row = element("li");
    row.dataset.planId = plan.id;
    const title = element("div");
    const link = element("a", `${plan.service || "?"} / ${plan.environment || "?"}`);
    link.href = `#plan=${plan.id}`;
    title.append(link, element("span", ` ${plan.status}`, `status-${plan.status}`),
                 element("div", `${plan.trigger || "unknown"} · ${plan.triggerType || "?"} · ${formatTime(plan.createdAt)}`, "muted"));
    const bar = element("div", null, "bar");
    bar.title = `${formatMs(planDuration(plan))} in total`;
    for (const step of plan.steps || []) {
      const part = element("span");
      const share = ((step.durationMs || 0) / longest) * 100;
      part.style.width = `${Math.max(share, 0.5)}%`;
      part.style.background = STEP_COLORS[step.name] || "#8a93a3";
      part.title = `${step.name}: ${step.status}, ${formatMs(step.durationMs)}`;
      bar.append(part);
    }
    const links = element("div");
    const detail = element("a", "Detail");
    detail.href = `/api/admin/rollbacks/${plan.id}`;
    links.append(detail, document.createTextNode(" · "));
    if (plan.reportAvailable) {
      const report = element("a", "Incident report");
      report.href = `/api/admin/rollbacks/${plan.id}/incident-report`;
      links.append(report);
    } else {
      links.append(element("span", "no report yet", "muted"));
    }
    row.append(title, bar, links);
    list.append(row);
  }
}

function renderSignals(signals) {
  const body = document.querySelector("#signals tbody");
  body.replaceChildren();
  if (signals.length === 0) {
    const row = element("tr");
    const cell = element("td", "No signals yet.", "muted");
    cell.colSpan = 5;
    row.append(cell);
    body.append(row);
    return;
  }
  for (const signal of signals) {
    const row = element("tr", null, `signal-${signal.kind}`);
    row.dataset.eventId = signal.eventId;
    row.append(element("td", formatTime(signal.occurredAt)), element("td", signal.kind),
               element("td", `${signal.service} / ${signal.environment}`),
               element("td", signal.label), element("td", signal.detail));
    body.append(row);
  }
}

async function renderDetail() {
  const section = document.getElementById("detail");
  const match = /^#plan=([0-9a-f-]{36})$/.exec(window.location.hash);
  if (!match) {
    section.hidden = true;
    return;
  }
  const plan = await getJson(`/api/admin/rollbacks/${match[1]}`);

  const fields = document.getElementById("detail-fields");
  fields.replaceChildren();
  const shown = ["id", "service", "environment", "fromVersion", "toVersion", "status", "trigger",
                 "triggerType", "actor", "reason", "createdAt", "startedAt", "finishedAt",
                 "durationMs", "failedStep", "error"];
  for (const key of shown) {
    fields.append(element("dt", key), element("dd", plan[key] === null ? "–" : plan[key]));
  }
  if (plan.breach) {
    const breach = plan.breach;
    fields.append(element("dt", "breach"),
                  element("dd", `${breach.trigger}: ${breach.measured} over ${breach.threshold} at ${breach.detectedAt}`));
  }

  const body = document.querySelector("#detail-steps tbody");
  body.replaceChildren();
  for (const step of plan.steps) {
    const row = element("tr");
    row.append(element("td", step.name), element("td", step.status), element("td", step.attempt),
               element("td", formatMs(step.durationMs)), element("td", step.error || ""));
    body.append(row);
  }

  const report = document.getElementById("detail-report");
  if (plan.reportAvailable) {
    const response = await fetch(`/api/admin/rollbacks/${plan.id}/incident-report`);
    report.textContent = response.ok ? await response.text() : `HTTP ${response.status}`;
  } else {
    report.textContent = "No incident report yet: it is written after the plan finishes.";
  }
  section.hidden = false;
}

async function refresh() {
  const error = document.getElementById("error");
  try {
    const [stats, page, signals] = await Promise.all([
      getJson("/api/admin/rollback/stats"),
      getJson(`/api/admin/rollbacks?limit=${RECENT}&steps=true`),
      getJson(`/api/admin/signals?limit=${RECENT}`),
    ]);
    renderTotals(stats);
    renderChart(stats.triggerBreakdown);
    renderTimeline(page.items);
    renderSignals(signals.items);
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = "true";
    error.hidden = true;
  } catch (failure) {
    error.textContent = `Could not load the statistics: ${failure.message}`;
    error.hidden = false;
  }
}

window.addEventListener("hashchange", () => renderDetail().catch((failure) => {
  document.getElementById("error").textContent = `Could not load the rollback: ${failure.message}`;
  document.getElementById("error").hidden = false;
}));
document.addEventListener("DOMContentLoaded", () => {
  renderLegend();
  refresh();
  renderDetail().catch(() => {});
  window.setInterval(refresh, REFRESH_MS);
});
