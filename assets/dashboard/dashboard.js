// The skill dashboard: calls the server's own HTTP API with the bearer
// token typed in, draws each answer, and offers each chart's numbers as a
// CSV download written exactly as the API's `Accept: text/csv` answer.
//
// Each chart container (`[data-chart]`) says what it did, for people and
// for tests: `data-state` (loading, ready, error), `data-points` (values
// drawn), `data-series`, and `data-request` (the API request it made:
// method, path and body).
"use strict";

const DEMO_SKILLS = [
  "amzn1.ask.skill.demo-trivia",
  "amzn1.ask.skill.demo-weather",
  "amzn1.ask.skill.demo-recipes",
  "amzn1.ask.skill.demo-home",
];
const COLORS = ["#3d7dd8", "#d8643d", "#2e9e6a", "#9a4fd0", "#c9a21a", "#5b6b7b"];
const DAY_MS = 86400000;

const $ = (id) => document.getElementById(id);

// ---- CSV, written as the server's src/api/csv.rs writes it ----

function csvNumber(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "";
  return String(v);
}

// Text a spreadsheet would run as a formula gets a leading ' (as the
// server's csv::neutralise); numbers are written as numbers.
function neutralise(v) {
  const s = String(v);
  return /^[=+\-@\t\r]/.test(s) ? "'" + s : s;
}

function csvField(v) {
  const s = typeof v === "number" ? csvNumber(v) : v === null || v === undefined ? "" : neutralise(v);
  return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}

function csvText(header, rows) {
  const lines = [header, ...rows].map((r) =>
    r.length === 1 && (r[0] === "" || r[0] === null) ? '""' : r.map(csvField).join(","),
  );
  return lines.join("\n") + "\n";
}

// The skill Metrics API answer as rows (see GetMetricsResponse::to_table).
function metricsCsv(answer) {
  const fields = [];
  for (const r of answer.results)
    for (const d of r.data)
      if (d.groupedBy && !fields.includes(d.groupedBy.groupedByField)) fields.push(d.groupedBy.groupedByField);
  const header = ["id", "label", "metricNamespace", "name", "stat", ...fields, "timestamp", "value"];
  const rows = [];
  for (const r of answer.results)
    for (const d of r.data) {
      const groups = fields.map((f) => {
        const g = d.groupedBy;
        return g && g.groupedByField === f ? g.groupedByValue : null;
      });
      d.timestamps.forEach((t, i) =>
        rows.push([r.id, r.label, r.metricNamespace, r.name, r.stat, ...groups, t, d.values[i]]),
      );
    }
  return csvText(header, rows);
}

function retentionCsv(answer) {
  const rows = [];
  for (const c of answer.cohorts)
    for (const w of c.retention) rows.push([c.cohortWeek, c.users, w.week, w.users, w.percentage]);
  return csvText(["cohortWeek", "cohortUsers", "week", "users", "percentage"], rows);
}

function breakdownCsv(answer) {
  const rows = [
    ["successful", answer.successful.sessions, answer.successful.percentage],
    ["failed", answer.failed.sessions, answer.failed.percentage],
    ["noResponse", answer.noResponse.sessions, answer.noResponse.percentage],
  ];
  return csvText(["type", "sessions", "percentage"], rows);
}

function intentsCsv(answer) {
  const rows = answer.intents.map((i) => [
    i.intent,
    i.customers,
    i.utterances,
    i.percentage,
    i.failedUtterances,
    i.failedPercentage,
  ]);
  return csvText(["intent", "customers", "utterances", "percentage", "failedUtterances", "failedPercentage"], rows);
}

function pathsCsv(answer) {
  const rows = [];
  for (const [section, ranking] of [["next", answer.next], ["path", answer.paths]])
    for (const r of ranking.items)
      rows.push([section, r.rank, r.name, r.users, r.sessions, r.percentage, r.folded]);
  return csvText(["section", "rank", "name", "users", "sessions", "percentage", "folded"], rows);
}

// ---- API ----

class ApiError extends Error {}

async function api(method, path, body, extraHeaders) {
  const headers = {
    Authorization: "Bearer " + $("token").value.trim(),
    Accept: "application/json",
    ...(extraHeaders || {}),
  };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch (_) {
    /* not JSON */
  }
  if (!res.ok) {
    const msg = json && json.message ? json.message : text || res.statusText;
    throw new ApiError(res.status + " " + (json && json.code ? json.code + ": " : "") + msg);
  }
  return json;
}

// Runs a Metrics API request, following nextToken and joining the pages.
async function metrics(skill, body) {
  const path = "/v2/skills/" + encodeURIComponent(skill) + "/metrics";
  let answer = await api("POST", path, body);
  let token = answer.paginationContext ? answer.paginationContext.nextToken : null;
  while (token) {
    const page = await api("POST", path, { ...body, nextToken: token });
    page.results.forEach((r, i) => {
      const into = answer.results[i].data;
      for (const d of r.data) {
        const last = into[into.length - 1];
        const same =
          last && JSON.stringify(last.groupedBy || null) === JSON.stringify(d.groupedBy || null);
        if (same) {
          last.timestamps.push(...d.timestamps);
          last.values.push(...d.values);
        } else into.push(d);
      }
    });
    token = page.paginationContext ? page.paginationContext.nextToken : null;
  }
  delete answer.paginationContext;
  return answer;
}

// ---- drawing ----

function card(name) {
  return document.querySelector('[data-chart="' + name + '"]');
}

function reset(el, request) {
  for (const child of [...el.children]) if (child.tagName !== "H2") child.remove();
  el.dataset.state = "loading";
  el.dataset.request = JSON.stringify(request);
  delete el.dataset.points;
  delete el.dataset.series;
}

function done(el, points, series, csv, filename) {
  const a = document.createElement("a");
  a.className = "csv";
  a.textContent = "CSV";
  a.download = filename;
  a.href = URL.createObjectURL(new Blob([csv], { type: "text/csv" }));
  el.querySelector("h2").append(a);
  el.dataset.points = String(points);
  el.dataset.series = String(series);
  el.dataset.state = "ready";
}

function fail(el, err) {
  const p = document.createElement("p");
  p.className = "error";
  p.textContent = err.message;
  el.append(p);
  el.dataset.state = "error";
}

function seriesLabel(r, d) {
  const g = d.groupedBy;
  if (g) return g.groupedByValue === "" ? "(none)" : g.groupedByValue;
  return r.label || r.id;
}

// A time chart: one line per (query, group), over the union of timestamps.
function drawLines(el, answer) {
  const lines = [];
  for (const r of answer.results) for (const d of r.data) lines.push({ label: seriesLabel(r, d), d });
  // Timestamps are epoch milliseconds.
  const times = [...new Set(lines.flatMap((l) => l.d.timestamps))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const data = [times.map((t) => t / 1000)];
  let points = 0;
  for (const l of lines) {
    const ys = new Array(times.length).fill(null);
    l.d.timestamps.forEach((t, i) => {
      ys[index.get(t)] = l.d.values[i];
      points += 1;
    });
    data.push(ys);
  }
  const box = document.createElement("div");
  el.append(box);
  const opts = {
    width: Math.max(460, el.clientWidth - 26),
    height: 240,
    scales: { x: { time: true } },
    series: [{}, ...lines.map((l, i) => ({ label: l.label, stroke: COLORS[i % COLORS.length], width: 2 }))],
    axes: [{}, { size: 60 }],
  };
  new uPlot(opts, data, box);
  return { points, series: lines.length };
}

// Horizontal bars: one per item, with its value.
function drawBars(el, items) {
  const max = Math.max(1, ...items.map((i) => i.value));
  const grid = document.createElement("div");
  grid.className = "bars";
  for (const item of items) {
    const name = document.createElement("span");
    name.textContent = item.label;
    const bar = document.createElement("div");
    bar.className = "bar" + (item.other ? " other" : "");
    bar.style.width = (100 * item.value) / max + "%";
    bar.dataset.value = String(item.value);
    const value = document.createElement("span");
    value.textContent = item.text;
    grid.append(name, bar, value);
  }
  el.append(grid);
}

function drawFailed(el, answer) {
  const items = [];
  for (const r of answer.results)
    for (const d of r.data)
      d.values.forEach((v) => items.push({ label: seriesLabel(r, d), value: v, text: String(v) }));
  items.sort((a, b) => b.value - a.value || a.label.localeCompare(b.label));
  drawBars(el, items);
  return { points: items.length, series: 1 };
}

// Sessions by how they ended, as shares of all ended sessions.
function drawBreakdown(el, answer) {
  const items = [
    ["successful", answer.successful],
    ["failed", answer.failed],
    ["no response", answer.noResponse],
  ].map(([label, s]) => ({ label, value: s.percentage, text: s.sessions + " (" + s.percentage + "%)" }));
  drawBars(el, items);
  return { points: items.length, series: 1 };
}

// Each intent's share of all utterances, with its share of all failures.
function drawIntents(el, answer) {
  const items = answer.intents.map((i) => ({
    label: i.intent === null ? "(unclassified)" : i.intent,
    value: i.percentage,
    text: i.percentage + "% of utterances, " + i.failedPercentage + "% of failures",
  }));
  drawBars(el, items);
  return { points: items.length, series: 1 };
}

function drawRetention(el, answer) {
  const table = document.createElement("table");
  table.className = "heat";
  const head = table.createTHead().insertRow();
  for (const h of ["cohort week", "users", ...Array.from({ length: answer.weeks + 1 }, (_, i) => "week " + i)]) {
    const th = document.createElement("th");
    th.textContent = h;
    head.append(th);
  }
  let points = 0;
  const body = table.createTBody();
  for (const c of answer.cohorts) {
    const row = body.insertRow();
    row.insertCell().textContent = c.cohortWeek.slice(0, 10);
    row.insertCell().textContent = String(c.users);
    for (let w = 0; w <= answer.weeks; w++) {
      const cell = row.insertCell();
      const v = c.retention.find((x) => x.week === w);
      if (!v) continue;
      points += 1;
      cell.textContent = v.percentage + "%";
      cell.title = v.users + " of " + c.users;
      cell.dataset.value = String(v.percentage);
      const a = Math.min(1, v.percentage / 100);
      cell.style.background = "rgba(61, 125, 216, " + (0.08 + 0.92 * a).toFixed(3) + ")";
      cell.style.color = a > 0.5 ? "#fff" : "#1d232a";
    }
  }
  el.append(table);
  return { points, series: answer.cohorts.length };
}

// Percentages are of users (document 001: "the percentage of users who
// invoked a particular intent after the LaunchRequest"); a user who went
// two ways is in both rows, so they may add up to more than 100%.
function drawPaths(el, answer) {
  const p = document.createElement("p");
  p.textContent =
    answer.next.users + " users (" + answer.next.sessions + " sessions) with " + answer.intent +
    "; what came right after it, % of those users:";
  el.append(p);
  drawBars(
    el,
    answer.next.items.map((r) => ({
      label: r.folded ? r.name + " (" + r.folded + " more)" : r.name,
      value: r.users,
      text: r.users + " users (" + r.percentage + "%), " + r.sessions + " sessions",
      other: r.folded > 0,
    })),
  );
  const table = document.createElement("table");
  table.className = "paths";
  const head = table.createTHead().insertRow();
  for (const h of ["#", "first steps of a session", "users", "% of " + answer.paths.users + " users", "sessions"]) {
    const th = document.createElement("th");
    th.textContent = h;
    head.append(th);
  }
  const body = table.createTBody();
  for (const r of answer.paths.items) {
    const row = body.insertRow();
    row.insertCell().textContent = String(r.rank);
    row.insertCell().textContent = r.folded ? r.name + " (" + r.folded + " paths)" : r.name;
    for (const v of [r.users, r.percentage, r.sessions]) {
      const n = row.insertCell();
      n.className = "n";
      n.textContent = String(v);
    }
  }
  el.append(table);
  return { points: answer.next.items.length + answer.paths.items.length, series: 2 };
}

// ---- the page ----

function query(id, name, stat, period, extra) {
  return {
    id,
    label: id,
    metricNamespace: "Alexa.Custom",
    name,
    stat,
    aggregationPeriod: period,
    ...(extra || {}),
  };
}

function metricCharts(start, end) {
  const range = { startTime: start, endTime: end, maxResultsPerQuery: 1000 };
  return [
    {
      name: "customers",
      draw: drawLines,
      body: { ...range, metricQueries: [query("customers", "CUSTOMERS", "count", "BY_DAY")] },
    },
    {
      name: "sessions",
      draw: drawLines,
      body: {
        ...range,
        metricQueries: [
          query("active", "ACTIVE_SESSIONS", "count", "BY_DAY"),
          query("user_ended", "USER_ENDED_SESSIONS", "count", "BY_DAY"),
          query("skill_ended", "SKILL_ENDED_SESSIONS", "count", "BY_DAY"),
          query("no_response", "USER_DID_NOT_RESPOND", "count", "BY_DAY"),
        ],
      },
    },
    {
      name: "utterances",
      draw: drawLines,
      body: {
        ...range,
        metricQueries: [
          query("utterances", "UTTERANCES", "count", "BY_DAY"),
          query("successful", "SUCCESSFUL_UTTERANCES", "count", "BY_DAY"),
          query("failed", "FAILED_UTTERANCES", "count", "BY_DAY"),
        ],
      },
    },
    {
      name: "failed",
      draw: drawFailed,
      body: {
        ...range,
        metricQueries: [query("failed", "FAILED_UTTERANCES", "count", "SINGLE", { groupBy: "intent" })],
      },
    },
    {
      name: "latency",
      draw: drawLines,
      body: {
        ...range,
        metricQueries: [
          query("p50", "SKILL_LATENCY", "p50", "BY_DAY"),
          query("p90", "SKILL_LATENCY", "p90", "BY_DAY"),
          query("p99", "SKILL_LATENCY", "p99", "BY_DAY"),
        ],
      },
    },
  ];
}

async function show(skill, start, end, intent) {
  const jobs = [];
  for (const c of metricCharts(start, end)) {
    const el = card(c.name);
    reset(el, { method: "POST", path: "/v2/skills/" + encodeURIComponent(skill) + "/metrics", body: c.body });
    jobs.push(
      metrics(skill, c.body).then((answer) => {
        const { points, series } = c.draw(el, answer);
        done(el, points, series, metricsCsv(answer), c.name + ".csv");
      }),
    );
  }
  const params = new URLSearchParams({ startTime: start, endTime: end });
  const base = "/v2/skills/" + encodeURIComponent(skill) + "/analytics/";
  const retention = { method: "GET", path: base + "retention?" + params };
  reset(card("retention"), retention);
  jobs.push(
    api("GET", retention.path).then((answer) => {
      const el = card("retention");
      const { points, series } = drawRetention(el, answer);
      done(el, points, series, retentionCsv(answer), "retention.csv");
    }),
  );
  for (const [name, route, draw, csv] of [
    ["breakdown", "sessions", drawBreakdown, breakdownCsv],
    ["intents", "intents", drawIntents, intentsCsv],
  ]) {
    const request = { method: "GET", path: base + route + "?" + params };
    reset(card(name), request);
    jobs.push(
      api("GET", request.path).then((answer) => {
        const el = card(name);
        const { points, series } = draw(el, answer);
        done(el, points, series, csv(answer), name + ".csv");
      }),
    );
  }
  params.set("intent", intent || "LaunchRequest");
  const paths = { method: "GET", path: base + "paths?" + params };
  reset(card("paths"), paths);
  jobs.push(
    api("GET", paths.path).then((answer) => {
      const el = card("paths");
      const { points, series } = drawPaths(el, answer);
      done(el, points, series, pathsCsv(answer), "paths.csv");
    }),
  );
  const names = ["customers", "sessions", "utterances", "failed", "latency", "retention", "breakdown", "intents", "paths"];
  const results = await Promise.allSettled(jobs);
  let failed = 0;
  results.forEach((r, i) => {
    if (r.status === "rejected") {
      failed += 1;
      fail(card(names[i]), r.reason);
    }
  });
  return failed;
}

// ---- metric alerts of the workspace (the skill) ----

function ruleSource(r) {
  if (r.metricId) return "interaction metric " + r.metricId;
  if (r.skillMetric) return r.skillMetric.metricNamespace + " " + r.skillMetric.name + " (" + r.skillMetric.lookBack + ")";
  if (r.metricStore) return "Metric Store " + r.metricStore.metricKey + " (" + r.metricStore.lookBack + ")";
  return "";
}

function ruleCondition(c) {
  const ops = { gt: ">", gte: "\u2265", lt: "<", lte: "\u2264", eq: "=", neq: "\u2260" };
  if (c.type === "anomaly") return "outside mean \u00b1 " + c.k + "\u03c3 of " + c.weeks + " weeks";
  const t = c.type === "change" ? c.threshold + " %" : String(c.threshold);
  return (c.type === "change" ? "change " : "") + (ops[c.operator] || c.operator) + " " + t;
}

// Lists the workspace's rules with their state: `data-state` and
// `data-rules` on the section say what it did.
async function showAlerts(workspace) {
  const el = $("alerts");
  for (const child of [...el.children]) if (child.tagName !== "H2") child.remove();
  el.dataset.state = "loading";
  try {
    const rules = await api("GET", "/api/metric-alerts", undefined, { "X-Workspace-Id": workspace });
    const table = document.createElement("table");
    table.className = "paths alerts";
    const head = table.insertRow();
    for (const h of ["Rule", "Watches", "When", "For", "State", "Groups", "Last evaluated"]) {
      const th = document.createElement("th");
      th.textContent = h;
      head.append(th);
    }
    for (const r of rules) {
      const row = table.insertRow();
      row.dataset.rule = r.id;
      row.dataset.ruleState = r.status.state;
      const busy = r.status.groups.filter((g) => g.state !== "ok").length;
      for (const text of [
        r.name,
        ruleSource(r),
        ruleCondition(r.condition),
        r.for + " every " + r.evaluationInterval,
        r.status.state,
        busy + " of " + r.status.groups.length + " not ok",
        r.status.lastEvaluatedAt || "never",
      ]) {
        const td = row.insertCell();
        td.textContent = text;
      }
      row.cells[4].className = "state " + r.status.state;
    }
    if (rules.length === 0) {
      const p = document.createElement("p");
      p.textContent = "No alert rules in this workspace (POST /api/metric-alerts).";
      el.append(p);
    } else el.append(table);
    el.dataset.rules = String(rules.length);
    el.dataset.state = "ready";
  } catch (err) {
    fail(el, err);
  }
}

function isoDay(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

async function submit(ev) {
  ev.preventDefault();
  const status = $("status");
  const skill = $("skill").value.trim();
  const start = $("start").value + "T00:00:00Z";
  const end = $("end").value + "T00:00:00Z";
  document.body.dataset.state = "loading";
  status.className = "";
  status.textContent = "Loading " + skill + " from " + $("start").value + " to " + $("end").value + " ...";
  try {
    const [failed] = await Promise.all([show(skill, start, end, $("intent").value.trim()), showAlerts(skill)]);
    status.textContent = failed ? failed + " chart(s) failed; see their messages." : "";
    status.className = failed ? "error" : "";
  } catch (err) {
    status.textContent = err.message;
    status.className = "error";
  }
  document.body.dataset.state = "ready";
}

function init() {
  const list = $("skills");
  for (const s of DEMO_SKILLS) {
    const o = document.createElement("option");
    o.value = s;
    list.append(o);
  }
  $("skill").value = DEMO_SKILLS[0];
  const today = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
  $("end").value = isoDay(today + DAY_MS);
  $("start").value = isoDay(today + DAY_MS - 28 * DAY_MS);
  $("controls").addEventListener("submit", submit);
  // The page is usable from here on (tests wait for this).
  document.body.dataset.state = "idle";
}

init();
