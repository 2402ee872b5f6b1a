// The debugger page: polls the relay's /ui/api, renders events, one event's journey, the DLQs and the
// match quality. Every value from the relay is inserted as text (textContent), never as HTML.
"use strict";

const TOKEN = document.querySelector('meta[name="relay-token"]').content;
const VENDORS = ["applovin", "appsflyer", "adroll"];
const state = { selected: null, outcomes: [], connections: [] };

async function api(path, options = {}) {
  const response = await fetch("/ui/api/" + path, {
    ...options,
    headers: { "X-Relay-UI": TOKEN, "Content-Type": "application/json" },
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

function badge(outcome) {
  return outcome ? el("span", { class: "badge " + outcome, "data-outcome": outcome }, outcome) : "";
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

// a vendor's connection named default is its vendor alone ("applovin"); another is "applovin.eu"
const vendorOf = (connection) => connection.split(".")[0];
const nameOf = (connection) => connection.split(".")[1] || "";

// one badge per connection of `vendor` the event was sent to, named unless it is the default connection
function connectionBadges(vendor, outcomes) {
  return Object.entries(outcomes)
    .filter(([connection]) => vendorOf(connection) === vendor)
    .map(([connection, outcome]) =>
      el("span", { class: "connection", "data-connection": connection }, nameOf(connection) ? nameOf(connection) + " " : "", badge(outcome)),
    );
}

function addConnections(connections) {
  const select = document.getElementById("connection");
  for (const connection of connections) {
    if (state.connections.includes(connection)) continue;
    state.connections.push(connection);
    select.append(el("option", { value: connection }, connection));
  }
}

async function refreshEvents() {
  const connection = document.getElementById("connection").value;
  const outcome = document.getElementById("outcome").value;
  const data = await api(`events?connection=${encodeURIComponent(connection)}&outcome=${encodeURIComponent(outcome)}`);
  if (!state.outcomes.length) {
    state.outcomes = data.outcomes;
    const select = document.getElementById("outcome");
    for (const name of data.outcomes) select.append(el("option", { value: name }, name));
  }
  addConnections(data.connections.filter((c) => c.includes(".")));
  const body = document.querySelector("#events tbody");
  body.replaceChildren(
    ...data.events.map((row) =>
      el(
        "tr",
        {
          "data-event-id": row.event_id,
          "data-source": row.source,
          class: row.event_id === state.selected ? "selected" : "",
          onclick: () => openEvent(row.event_id, row.source),
        },
        el("td", {}, el("code", {}, row.event_id)),
        el("td", { class: "source" }, row.source),
        el("td", {}, row.accepted_at),
        ...VENDORS.map((v) => el("td", { "data-vendor": v }, ...connectionBadges(v, row.vendors))),
      ),
    ),
  );
  document.getElementById("empty").hidden = data.events.length > 0;
  renderMatch(data.match);
}

function renderMatch(match) {
  const kinds = Object.keys(Object.values(match)[0]?.coverage || {});
  const head = document.querySelector("#coverage thead");
  head.replaceChildren(el("tr", {}, el("th", {}, "vendor"), el("th", {}, "events"), ...kinds.map((k) => el("th", {}, k.replace("_", " ")))));
  const body = document.querySelector("#coverage tbody");
  body.replaceChildren(
    ...Object.entries(match).map(([vendor, m]) =>
      el(
        "tr",
        { "data-vendor": vendor },
        el("td", {}, vendor),
        el("td", {}, m.forwarded),
        ...kinds.map((k) => el("td", {}, Math.round(m.coverage[k] * 100) + " %")),
      ),
    ),
  );
}

async function openEvent(eventId, source = "default") {
  state.selected = eventId;
  for (const row of document.querySelectorAll("#events tbody tr")) {
    row.classList.toggle("selected", row.dataset.eventId === eventId && row.dataset.source === source);
  }
  const journey = await api("events/" + encodeURIComponent(eventId) + "?source=" + encodeURIComponent(source));
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-id").textContent = journey.event_id;
  document.getElementById("detail-head").textContent =
    `accepted ${journey.accepted_at || "(no ingest record kept)"}` + (journey.request_id ? `, request ${journey.request_id}` : "") +
    (journey.source && journey.source !== "default" ? `, from source ${journey.source}` : "");
  const vendors = document.getElementById("detail-vendors");
  vendors.replaceChildren(...Object.entries(journey.vendors).map(([vendor, part]) => vendorPart(vendor, part)));
}

function vendorPart(vendor, part) {
  const why = part.errors ? part.errors.map((e) => `${e.field}: ${e.message}`).join("; ") : part.reason || "";
  const attempts = el(
    "table",
    { class: "attempts" },
    el("thead", {}, el("tr", {}, ...["at", "try", "HTTP", "ms", "vendor's answer"].map((h) => el("th", {}, h)))),
    el(
      "tbody",
      {},
      ...part.attempts.map((a) =>
        el("tr", {}, el("td", {}, a.at), el("td", {}, a.attempt), el("td", {}, a.status ?? "no answer"),
          el("td", {}, Math.round(a.latency_ms)), el("td", {}, el("pre", { class: "response" }, a.response))),
      ),
    ),
  );
  const request = part.request
    ? el("div", {}, el("h4", {}, "Request as sent"), el("pre", { class: "request" },
        `${part.request.method} ${part.request.url}\n` +
        Object.entries(part.request.headers).map(([k, v]) => `${k}: ${v}`).join("\n") +
        "\n\n" + JSON.stringify(part.request.body, null, 2)))
    : "";
  return el(
    "div",
    { class: "vendor-part", "data-vendor": vendor },
    el("h3", {}, vendor, " ", badge(part.outcome)),
    why ? el("p", { class: "reason" }, why) : "",
    part.next_attempt_at ? el("p", {}, "next attempt at " + part.next_attempt_at) : "",
    part.attempts.length ? attempts : el("p", { class: "hint" }, "no request carried it"),
    request,
  );
}

async function refreshDlq() {
  const data = await api("dlq");
  const box = document.getElementById("dlq-vendors");
  box.replaceChildren(
    ...VENDORS.map((vendor) => {
      const { count, letters } = data[vendor];
      return el(
        "div",
        { class: "vendor-dlq", "data-vendor": vendor },
        el("strong", {}, vendor), " ", el("span", { class: "count" }, `${count} message(s)`), " ",
        count ? el("button", { class: "redrive", onclick: () => act(vendor, "redrive") }, "Redrive all") : "",
        count ? el("button", { class: "purge danger", onclick: () => act(vendor, "purge") }, "Purge") : "",
        el("ul", {}, ...letters.map((l) => el("li", { class: "letter", "data-connection": l.connection || vendor },
          el("code", {}, l.event_id || "?"), l.connection && l.connection !== vendor ? ` (${l.connection})` : "", ` ${l.outcome}: ${l.reason}`))),
      );
    }),
  );
}

async function act(vendor, action) {
  if (action === "purge" && !confirm(`Delete every message of the ${vendor} DLQ?`)) return;
  try {
    const result = await api(`dlq/${vendor}/${action}`, { method: "POST", body: "{}" });
    setStatus(action === "redrive" ? `moved ${result.moved} message(s) back to the ${vendor} queue` : `purged the ${vendor} DLQ`);
  } catch (error) {
    setStatus(`${action} failed: ${error.message}`);
  }
  await refreshDlq();
}

async function tick() {
  if (document.getElementById("paused").checked) return;
  try {
    await Promise.all([refreshEvents(), refreshDlq()]);
    setStatus("updated " + new Date().toLocaleTimeString());
  } catch (error) {
    setStatus("cannot reach the relay: " + error.message);
  }
}

addConnections(VENDORS);
document.getElementById("filters").addEventListener("change", tick);
tick();
setInterval(tick, 2000);
