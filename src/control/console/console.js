// kaos console: polls /stats every second, lists rules, counts faults, charts latency, and
// adds or deletes rules through the same REST API as curl. No build step, no dependencies.
"use strict";

// The features and their fields come from GET /features, the same registry the REST API
// validates against, so the form can never offer a field the API would refuse.
let FEATURES = {};
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

/// The event tail: new events since the last one shown, newest on top, the latest 50 kept.
const EVENTS_SHOWN = 50;
let lastEvent = 0;

async function refreshEvents() {
  const { status, json } = await api("GET", `/events?since=${lastEvent}&limit=${EVENTS_SHOWN}`);
  if (status !== 200 || json.length === 0) return;
  const body = $("events");
  if (lastEvent === 0) body.replaceChildren();
  for (const event of json) {
    lastEvent = Math.max(lastEvent, event.seq);
    const row = body.insertRow(0);
    row.dataset.feature = event.feature;
    const did = Object.entries(event.did).map(([key, value]) => `${key}=${value}`).join(" ");
    const request = event.apiKey ? `${event.apiKey} v${event.apiVersion} #${event.correlationId}` : "connection";
    const partitions = event.topicPartitions.map((tp) => `${tp.topic}-${tp.partition}`).join(", ");
    row.append(text("td", event.seq), text("td", new Date(event.timeMs).toLocaleTimeString()),
      text("td", event.dryRun ? `${event.feature} (dry run)` : event.feature), text("td", did), text("td", request),
      text("td", [event.clientAddress, event.clientId, event.authenticatedUser].filter(Boolean).join(" ")),
      text("td", event.brokerId ?? ""), text("td", partitions));
  }
  while (body.rows.length > EVENTS_SHOWN) body.deleteRow(-1);
}

async function refresh() {
  refreshEvents();
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

/// One input per config field: a select for enums, a comma-separated text box for lists, a number
/// box for integers. The field's description is its tooltip and its default the placeholder.
function fieldInput(field) {
  const label = text("label", `${field.name}${field.required ? " *" : ""} `);
  label.title = field.description;
  let input;
  if (field.enum) {
    input = document.createElement("select");
    const options = field.required ? field.enum : ["", ...field.enum];
    input.replaceChildren(...options.map((option) => Object.assign(document.createElement("option"),
      { value: option, textContent: option || "(default)" })));
  } else {
    input = document.createElement("input");
    if (field.type === "integer") input.type = "number";
    const shown = Array.isArray(field.default) ? field.default.join(",") : field.default;
    input.placeholder = shown === undefined || shown === "" ? (field.type === "array" ? "a,b" : "") : String(shown);
  }
  input.id = `f-${field.name}`;
  input.dataset.field = field.name;
  label.append(input);
  return label;
}

function showFieldsFor(feature) {
  const spec = FEATURES[feature];
  const fill = (select, options) => {
    select.replaceChildren(...options.map((option) => Object.assign(document.createElement("option"), { value: option, textContent: option })));
  };
  fill($("apiKeys"), spec.anyApiKey ? ["PRODUCE", "FETCH", "METADATA", "LIST_OFFSETS", "OFFSET_COMMIT", "OFFSET_FETCH",
    "JOIN_GROUP", "HEARTBEAT", "FIND_COORDINATOR"] : spec.apiKeys);
  fill($("direction"), spec.directions);
  $("summary").textContent = spec.summary;
  $("own-fields").replaceChildren(...spec.fields.map(fieldInput));
  $("common-fields").replaceChildren(...spec.commonFields.map(fieldInput));
}

function say(message, ok) {
  $("message").textContent = message;
  $("message").className = ok ? "ok" : "error";
}

/// Reads one field as its schema types it; returns [value, problem]. Empty means "default".
function readField(field, raw) {
  const items = field.type === "array" ? raw.split(",").map((s) => s.trim()).filter(Boolean) : [raw.trim()];
  const itemType = field.type === "array" ? field.items?.type : field.type;
  const allowed = field.type === "array" ? field.items?.enum : field.enum;
  const values = [];
  for (const item of items) {
    if (item === "") continue;
    if (itemType === "integer") {
      const number = Number(item);
      if (!Number.isInteger(number)) return [null, `${field.name} must be a whole number`];
      const min = field.type === "array" ? field.items?.minimum : field.minimum;
      const max = field.type === "array" ? field.items?.maximum : field.maximum;
      if (min !== undefined && number < min) return [null, `${field.name} must be at least ${min}`];
      if (max !== undefined && number > max) return [null, `${field.name} must be at most ${max}`];
      values.push(number);
    } else {
      if (allowed && !allowed.includes(item)) return [null, `${field.name}: unknown value ${item}`];
      values.push(item);
    }
  }
  if (field.type === "array") return [values.length ? values : undefined, null];
  return [values[0], null];
}

/// Builds the rule body from the form; returns [body, null] or [null, message] with the field marked.
function readForm(feature) {
  for (const input of document.querySelectorAll("[data-field]")) input.classList.remove("invalid");
  const spec = FEATURES[feature];
  const config = {};
  for (const field of [...spec.commonFields, ...spec.fields]) {
    const input = $(`f-${field.name}`);
    const [value, problem] = readField(field, input.value);
    if (problem) { input.classList.add("invalid"); return [null, problem]; }
    if (value === undefined && field.required) { input.classList.add("invalid"); return [null, `${field.name} is required`]; }
    if (value !== undefined) config[field.name] = value;
  }
  if (spec.requiresTopics && !config.topics && !config.topicPatterns) {
    $("f-topicPatterns").classList.add("invalid");
    return [null, `${feature} needs topics or topicPatterns`];
  }
  return [{ config, apiKeys: $("apiKeys").value, direction: $("direction").value }, null];
}

/// Marks the input a 400 names (`config.minLatencyToAddInMilliseconds`, `config.errors[1]`).
function markField(path) {
  const name = (path || "").replace(/^config\./, "").replace(/\[\d+\]$/, "");
  const input = document.querySelector(`[data-field="${name}"]`) || $(name);
  if (input) input.classList.add("invalid");
}

$("rule-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const feature = $("feature").value;
  const [body, problem] = readForm(feature);
  if (problem) return say(problem, false);
  const path = `/tenant/${encodeURIComponent($("tenant").value)}/user/${encodeURIComponent($("user").value)}/feature/${feature}`;
  const { status, json } = await api("POST", path, body);
  if (status !== 200) markField(json.field);
  say(status === 200 ? `added ${feature}` : `${json.field ? json.field + ": " : ""}${json.error}`, status === 200);
  refresh();
});

$("token").addEventListener("change", (event) => { sessionStorage.setItem("kaos-token", event.target.value); start(); });
$("feature").addEventListener("change", (event) => showFieldsFor(event.target.value));

async function start() {
  const { status, json } = await api("GET", "/features");
  if (status !== 200) return say(json.error || "cannot load the features", false);
  FEATURES = Object.fromEntries(json.map((feature) => [feature.name, feature]));
  $("feature").replaceChildren(...json.map((f) => Object.assign(document.createElement("option"), { value: f.name, textContent: f.name })));
  showFieldsFor($("feature").value);
  refresh();
}

start();
setInterval(refresh, 1000);
