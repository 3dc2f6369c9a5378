// kaos console: polls /stats every second, lists rules, counts faults, charts latency, and
// adds or deletes rules through the same REST API as curl. No build step, no dependencies.
"use strict";

const FEATURES = {
  "broken-broker": { apis: ["PRODUCE", "FETCH"], directions: ["REQUEST"], fields: ["errors", "latency", "topics"] },
  "leader-election": { apis: ["PRODUCE", "FETCH"], directions: ["REQUEST"], fields: ["errors", "latency", "topics"] },
  "duplicate-resource": { apis: ["PRODUCE"], directions: ["REQUEST"], fields: ["topics"] },
  "random-bytes": { apis: ["PRODUCE"], directions: ["REQUEST"], fields: ["random", "topics"] },
  "slow-broker": { apis: ["PRODUCE", "FETCH", "METADATA", "LIST_OFFSETS", "OFFSET_COMMIT", "OFFSET_FETCH", "JOIN_GROUP", "HEARTBEAT", "FIND_COORDINATOR"], directions: ["REQUEST", "RESPONSE"], fields: ["latency", "topics"] },
  "slow-topic": { apis: ["PRODUCE", "FETCH"], directions: ["REQUEST", "RESPONSE"], fields: ["latency", "topics"] },
  "invalid-schema": { apis: ["PRODUCE"], directions: ["REQUEST"], fields: ["schema", "topics"] },
};
const $ = (id) => document.getElementById(id);
const history = [];
let previous = null;

function token() { return sessionStorage.getItem("kaos-token") || ""; }

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401) $("token-box").hidden = false;
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch (_) { json = { error: text }; }
  return { status: response.status, json };
}

function text(tag, content, className) {
  const element = document.createElement(tag);
  element.textContent = content;
  if (className) element.className = className;
  return element;
}

function renderRules(rules) {
  const body = $("rules");
  body.replaceChildren();
  if (rules.length === 0) {
    const row = body.insertRow();
    row.append(Object.assign(text("td", "no rules", "muted"), { colSpan: 6 }));
    return;
  }
  for (const rule of rules) {
    const row = body.insertRow();
    row.dataset.feature = rule.feature;
    row.append(text("td", rule.feature), text("td", `${rule.tenant} / ${rule.user}`),
      text("td", `${rule.apiKeys} / ${rule.direction}`));
    const config = document.createElement("td");
    config.append(text("code", JSON.stringify(rule.config)));
    row.append(config);
    const state = document.createElement("td");
    state.append(text("span", rule.active ? "active" : "quiet", `badge ${rule.active ? "active" : "quiet"}`));
    row.append(state);
    const action = document.createElement("td");
    const remove = text("button", "Delete", "delete");
    remove.dataset.feature = rule.feature;
    remove.addEventListener("click", async () => {
      const path = `/tenant/${encodeURIComponent(rule.tenant)}/user/${encodeURIComponent(rule.user)}/feature/${rule.feature}` +
        `/apiKeys/${rule.apiKeys}/direction/${rule.direction}`;
      const { status, json } = await api("DELETE", path);
      say(status === 200 ? `deleted ${rule.feature}` : json.error, status === 200);
      refresh();
    });
    action.append(remove);
    row.append(action);
  }
}

function renderCounters(stats, seconds) {
  const body = $("counters");
  body.replaceChildren();
  for (const [feature, counts] of Object.entries(stats.features)) {
    const before = previous ? previous.features[feature].affected : counts.affected;
    const rate = seconds > 0 ? (counts.affected - before) / seconds : 0;
    const row = body.insertRow();
    row.append(text("td", feature));
    const affected = text("td", String(counts.affected));
    affected.id = `counter-${feature}`;
    row.append(affected, text("td", rate.toFixed(1)), text("td", String(counts.recordsChanged)),
      text("td", `${counts.latencyAddedMs} ms`));
  }
}

function drawChart() {
  const canvas = $("chart");
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  const points = history.filter((p) => p !== null);
  const top = Math.max(1, ...points) * 1.2;
  context.strokeStyle = "#dde2e7";
  context.beginPath();
  for (let y = 0; y <= 4; y++) {
    context.moveTo(0, (canvas.height * y) / 4);
    context.lineTo(canvas.width, (canvas.height * y) / 4);
  }
  context.stroke();
  context.fillStyle = "#6b7480";
  context.fillText(`${top.toFixed(1)} ms`, 4, 12);
  context.strokeStyle = "#c2410c";
  context.lineWidth = 2;
  context.beginPath();
  history.forEach((value, index) => {
    if (value === null) return;
    const x = (canvas.width * index) / 59;
    const y = canvas.height - (canvas.height * value) / top;
    index === 0 || history[index - 1] === null ? context.moveTo(x, y) : context.lineTo(x, y);
  });
  context.stroke();
}

async function refresh() {
  const { status, json } = await api("GET", "/stats");
  if (status !== 200) return;
  const now = performance.now();
  const seconds = previous ? (now - previous.at) / 1000 : 0;
  renderRules(json.rules);
  renderCounters(json, seconds);
  $("upstream").textContent = json.upstreamReady ? "upstream ready" : "upstream not ready";
  $("upstream").className = `badge ${json.upstreamReady ? "ready" : ""}`;
  $("connections").textContent = `${json.connectionsOpen} client connections`;
  if (previous) {
    const count = json.latency.count - previous.latency.count;
    const mean = count > 0 ? ((json.latency.sumSeconds - previous.latency.sumSeconds) / count) * 1000 : null;
    history.push(mean);
    if (history.length > 60) history.shift();
    $("latency-now").textContent = mean === null ? "" : `${mean.toFixed(2)} ms now`;
    $("rate-now").textContent = `${(count / seconds).toFixed(0)} requests/s`;
    drawChart();
  }
  previous = { ...json, at: now };
}

function showFieldsFor(feature) {
  const spec = FEATURES[feature];
  for (const label of document.querySelectorAll("[data-for]")) {
    label.hidden = !spec.fields.includes(label.dataset.for);
  }
  const fill = (select, options) => {
    select.replaceChildren(...options.map((option) => Object.assign(document.createElement("option"), { value: option, textContent: option })));
  };
  fill($("apiKeys"), spec.apis);
  fill($("direction"), spec.directions);
}

function say(message, ok) {
  $("message").textContent = message;
  $("message").className = ok ? "ok" : "error";
}

const list = (id) => $(id).value.split(",").map((s) => s.trim()).filter(Boolean);

/// Builds the rule body from the form; returns [body, null] or [null, message] with the field marked.
function readForm(feature) {
  for (const input of document.querySelectorAll("input")) input.classList.remove("invalid");
  const fail = (id, message) => { $(id).classList.add("invalid"); return [null, message]; };
  const spec = FEATURES[feature];
  const config = {};
  const number = (id) => ($(id).value === "" ? null : Number($(id).value));
  for (const [id, key] of [["rateInPercent", "rateInPercent"], ["duration", "duration"], ["quietPeriod", "quietPeriod"]]) {
    const value = number(id);
    if (value === null) continue;
    if (!Number.isInteger(value) || value < 0) return fail(id, `${key} must be a whole number ≥ 0`);
    config[key] = value;
  }
  if (config.rateInPercent > 100) return fail("rateInPercent", "rate must be 0-100");
  if (config.duration !== undefined || config.quietPeriod !== undefined) config.timeUnit = "MILLISECONDS";
  const brokers = list("brokerIds").map(Number);
  if (brokers.some((id) => !Number.isInteger(id))) return fail("brokerIds", "broker ids are whole numbers");
  config.brokerIds = brokers;
  if (list("topics").length) config.topics = list("topics");
  if (list("topicPatterns").length) config.topicPatterns = list("topicPatterns");
  if (feature === "slow-topic" && !config.topics && !config.topicPatterns) return fail("topicPatterns", "slow-topic needs topics or topic patterns");
  if (spec.fields.includes("errors") && list("errors").length) config.errors = list("errors");
  if (spec.fields.includes("latency")) {
    const min = number("minLatency"), max = number("maxLatency");
    if (min !== null && (!Number.isInteger(min) || min < 0)) return fail("minLatency", "latency must be a whole number ≥ 0");
    if (max !== null && (!Number.isInteger(max) || max < 0)) return fail("maxLatency", "latency must be a whole number ≥ 0");
    if (min !== null && max !== null && min > max) return fail("minLatency", "min latency is above max");
    if (min !== null) config.minLatencyToAddInMilliseconds = min;
    if (max !== null) config.maxLatencyToAddInMilliseconds = max;
  }
  if (spec.fields.includes("random")) {
    config.nbMessages = number("nbMessages") ?? 1;
    config.sizeInBytes = number("sizeInBytes") ?? 10;
  }
  if (spec.fields.includes("schema")) {
    if (number("fakeSchemaId") === null) return fail("fakeSchemaId", "a fake schema id is required");
    config.fakeSchemaId = number("fakeSchemaId");
  }
  return [{ config, apiKeys: $("apiKeys").value, direction: $("direction").value }, null];
}

$("rule-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const feature = $("feature").value;
  const [body, problem] = readForm(feature);
  if (problem) return say(problem, false);
  const path = `/tenant/${encodeURIComponent($("tenant").value)}/user/${encodeURIComponent($("user").value)}/feature/${feature}`;
  const { status, json } = await api("POST", path, body);
  say(status === 200 ? `added ${feature}` : `${json.field ? json.field + ": " : ""}${json.error}`, status === 200);
  refresh();
});

$("token").addEventListener("change", (event) => { sessionStorage.setItem("kaos-token", event.target.value); refresh(); });
$("feature").replaceChildren(...Object.keys(FEATURES).map((f) => Object.assign(document.createElement("option"), { value: f, textContent: f })));
$("feature").addEventListener("change", (event) => showFieldsFor(event.target.value));
showFieldsFor($("feature").value);
refresh();
setInterval(refresh, 1000);
