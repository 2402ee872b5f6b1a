// The debugger page: polls the relay's /ui/api, renders events, one event's journey, the chart of outcomes,
// the DLQs, the refused requests and the match quality. Every value from the relay is inserted as text
// (textContent), never as HTML.
"use strict";

const TOKEN = document.querySelector('meta[name="relay-token"]').content;
const VENDORS = ["applovin", "appsflyer", "adroll"];
const SVG = "http://www.w3.org/2000/svg";
const state = { selected: null, outcomes: [], options: { connection: [], source: [], name: [] }, opened: new Set() };

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

// a time the relay gives in UTC (ISO 8601), shown in the browser's local time, UTC on hover
function when(iso) {
  if (!iso) return "";
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return iso;
  const today = at.toDateString() === new Date().toDateString();
  const clock = { hour: "2-digit", minute: "2-digit", second: "2-digit" };
  const local = today ? at.toLocaleTimeString(undefined, clock) : at.toLocaleString(undefined, { month: "short", day: "numeric", ...clock });
  return el("time", { datetime: iso, title: iso.replace("T", " ").replace("Z", " UTC") }, local);
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

// a vendor's connection named default is its vendor alone ("applovin"); another is "applovin.eu"
const vendorOf = (connection) => connection.split(".")[0];
const nameOf = (connection) => connection.split(".")[1] || "";
const value = (id) => document.getElementById(id).value;

// one badge per connection of `vendor` the event was sent to, named unless it is the default connection
function connectionBadges(vendor, outcomes) {
  return Object.entries(outcomes)
    .filter(([connection]) => vendorOf(connection) === vendor)
    .map(([connection, outcome]) =>
      el("span", { class: "connection", "data-connection": connection }, nameOf(connection) ? nameOf(connection) + " " : "", badge(outcome)),
    );
}

// add what the relay has seen to a filter's choices (a choice stays once seen)
function addOptions(select, values) {
  for (const v of values) {
    if (state.options[select].includes(v)) continue;
    state.options[select].push(v);
    document.getElementById(select).append(el("option", { value: v }, v));
  }
}

async function refreshEvents() {
  const query = ["connection", "outcome", "source", "name", "q"].map((k) => `${k}=${encodeURIComponent(value(k).trim())}`).join("&");
  const data = await api("events?" + query);
  if (!state.outcomes.length) {
    state.outcomes = data.outcomes;
    for (const name of data.outcomes) document.getElementById("outcome").append(el("option", { value: name }, name));
  }
  addOptions("connection", data.connections.filter((c) => c.includes(".")));
  addOptions("source", data.sources);
  addOptions("name", data.names);
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
        el("td", { class: "name" }, row.name || ""),
        el("td", { class: "source" }, row.source),
        el("td", {}, row.accepted_at ? when(row.accepted_at) : row.refused ? "refused" : ""),
        ...VENDORS.map((v) => el("td", { "data-vendor": v }, ...connectionBadges(v, row.vendors))),
      ),
    ),
  );
  const empty = document.getElementById("empty");
  empty.hidden = data.events.length > 0;
  empty.textContent = value("q").trim() ? `No event id holds "${value("q").trim()}".` : "No events in the last hour. Send some: relay send FILE.";
  renderChart(data.chart);
  renderMatch(data.match);
}

// per vendor, a bar per minute stacked by outcome
function renderChart(chart) {
  const outcomes = Object.keys(Object.values(chart.series)[0] || {});
  const box = document.getElementById("chart-vendors");
  box.replaceChildren(
    ...VENDORS.map((vendor) => {
      const series = chart.series[vendor];
      const totals = chart.minutes.map((_, i) => outcomes.reduce((sum, o) => sum + series[o][i], 0));
      const top = Math.max(1, ...totals);
      const svg = document.createElementNS(SVG, "svg");
      svg.setAttribute("viewBox", `0 0 ${chart.minutes.length * 4} 40`);
      svg.setAttribute("preserveAspectRatio", "none");
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", `${vendor}: ${totals.reduce((a, b) => a + b, 0)} event outcomes in the last hour`);
      chart.minutes.forEach((minute, i) => {
        let y = 40;
        for (const outcome of outcomes) {
          const n = series[outcome][i];
          if (!n) continue;
          const h = (n / top) * 40;
          y -= h;
          const rect = document.createElementNS(SVG, "rect");
          for (const [k, v] of Object.entries({ x: i * 4, y, width: 3.4, height: h, class: "o-" + outcome })) rect.setAttribute(k, v);
          const title = document.createElementNS(SVG, "title");
          title.textContent = `${new Date(minute).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })} (${minute.slice(11, 16)} UTC): ${n} ${outcome}`;
          rect.append(title);
          svg.append(rect);
        }
      });
      return el("div", { class: "chart-vendor", "data-vendor": vendor }, el("span", {}, vendor), svg);
    }),
  );
  document.getElementById("chart-legend").replaceChildren(...outcomes.flatMap((o) => [el("span", { class: "o-" + o }), o]));
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
  let journey;
  try {
    journey = await api("events/" + encodeURIComponent(eventId) + "?source=" + encodeURIComponent(source));
  } catch (error) {
    setStatus(`${eventId}: ${error.message}`);
    return;
  }
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-id").textContent = journey.event_id;
  const head = document.getElementById("detail-head");
  head.replaceChildren(
    journey.accepted_at ? "accepted " : "never accepted",
    journey.accepted_at ? when(journey.accepted_at) : "",
    journey.request_id ? `, request ${journey.request_id}` : "",
    journey.source && journey.source !== "default" ? `, from source ${journey.source}` : "",
  );
  const refused = journey.refused || [];
  document.getElementById("detail-refused").replaceChildren(
    ...(refused.length ? [el("h3", {}, `Refused ${refused.length} time(s)`), el("ul", {}, ...refused.map((r) => el("li", { class: "reason" }, when(r.at), ` HTTP ${r.status} ${r.reason}: ${refusalWhy(r, eventId)}`)))] : []),
  );
  const vendors = document.getElementById("detail-vendors");
  vendors.replaceChildren(...Object.entries(journey.vendors).map(([vendor, part]) => vendorPart(vendor, part)));
}

function refusalWhy(refusal, eventId) {
  const mine = (refusal.rejected || []).filter((r) => !eventId || r.event_id === eventId);
  if (mine.length) return mine.map((r) => (r.errors || []).map((e) => `${e.field} ${e.message}`).join(", ")).join("; ");
  const skew = refusal.signature?.skew_seconds;
  return refusal.error + (skew !== undefined && skew !== null ? ` (signed ${Math.abs(skew)} s ${skew > 0 ? "before" : "after"} the relay's clock)` : "");
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
        el("tr", {}, el("td", {}, when(a.at)), el("td", {}, a.attempt), el("td", {}, a.status ?? "no answer"),
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
    part.next_attempt_at ? el("p", {}, "next attempt at ", when(part.next_attempt_at)) : "",
    part.attempts.length ? attempts : el("p", { class: "hint" }, "no request carried it"),
    request,
  );
}

function letterItem(vendor, letter) {
  const key = `${vendor}/${letter.event_id}`;
  const detail = el("dl", { class: "letter-detail", hidden: "" },
    ...[["outcome", letter.outcome], ["reason", letter.reason], ["HTTP status", letter.status], ["attempts", letter.attempts],
      ["connection", letter.connection || vendor]].flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v ?? "")]),
    el("dt", {}, "failed at"), el("dd", {}, when(letter.when)),
    el("dt", {}, "vendor's answer"), el("dd", {}, el("pre", { class: "response" }, letter.vendor_response || "(none)")));
  detail.hidden = !state.opened.has(key);
  const ids = (letter.event_id || "").split(", ").filter(Boolean);
  return el(
    "li",
    { class: "letter", "data-connection": letter.connection || vendor, "data-event-id": letter.event_id || "" },
    el("code", {}, letter.event_id || "?"), letter.connection && letter.connection !== vendor ? ` (${letter.connection})` : "",
    ` ${letter.outcome}: ${letter.reason}`,
    letter.vendor_response ? el("div", { class: "answer" }, `${vendor} answered: ${letter.vendor_response.slice(0, 160)}`) : "",
    el("div", {},
      el("button", { class: "small open", onclick: () => { state.opened.has(key) ? state.opened.delete(key) : state.opened.add(key); detail.hidden = !detail.hidden; if (ids.length === 1) openEvent(ids[0]); } }, "Open"),
      ids.length ? el("button", { class: "small redrive-one", onclick: () => act(vendor, "redrive", ids) }, "Redrive") : "",
      ids.length ? el("button", { class: "small purge-one danger", onclick: () => act(vendor, "purge", ids) }, "Purge") : ""),
    detail,
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
        count ? el("button", { class: "purge danger", onclick: () => act(vendor, "purge") }, "Purge all") : "",
        el("ul", {}, ...letters.map((l) => letterItem(vendor, l))),
      );
    }),
  );
}

async function refreshRefused() {
  const { refused } = await api("refused");
  document.querySelector("#refusals tbody").replaceChildren(
    ...refused.map((r) =>
      el("tr", { "data-request-id": r.request_id, "data-reason": r.reason, title: `request ${r.request_id}`,
        onclick: () => { if (r.event_ids?.length) { document.getElementById("q").value = r.event_ids[0]; openEvent(r.event_ids[0], r.source_known ? r.source : "default"); } } },
        el("td", {}, when(r.at)),
        el("td", {}, `${r.status} `, el("code", {}, r.reason),
          r.source !== "default" ? el("div", { class: "source" }, `source ${r.source}${r.source_known ? "" : " (unknown)"}`) : ""),
        el("td", {}, el("code", {}, (r.event_ids || []).slice(0, 3).join(", ") + ((r.event_ids || []).length > 3 ? " …" : ""))),
        el("td", { class: "reason" }, refusalWhy(r))),
    ),
  );
  document.getElementById("refused-empty").hidden = refused.length > 0;
}

async function act(vendor, action, eventIds = null) {
  const what = eventIds ? eventIds.join(", ") : `every message of the ${vendor} DLQ`;
  if (action === "purge" && !confirm(`Delete ${what}?`)) return;
  try {
    const result = await api(`dlq/${vendor}/${action}`, { method: "POST", body: JSON.stringify(eventIds ? { event_ids: eventIds } : {}) });
    if (action === "redrive") setStatus(`moved ${result.moved} message(s) back to the ${vendor} queue`);
    else setStatus(result.purged ? `purged the ${vendor} DLQ` : `deleted ${result.deleted} message(s) from the ${vendor} DLQ`);
  } catch (error) {
    setStatus(`${action} failed: ${error.message}`);
  }
  await refreshDlq();
}

async function tick() {
  if (document.getElementById("paused").checked) return;
  try {
    await Promise.all([refreshEvents(), refreshDlq(), refreshRefused()]);
    setStatus("updated " + new Date().toLocaleTimeString());
  } catch (error) {
    setStatus("cannot reach the relay: " + error.message);
  }
}

addOptions("connection", VENDORS);
document.getElementById("filters").addEventListener("change", tick);
document.getElementById("filters").addEventListener("submit", (e) => { e.preventDefault(); tick(); });
document.getElementById("q").addEventListener("input", () => { clearTimeout(state.typing); state.typing = setTimeout(tick, 250); });
tick();
setInterval(tick, 2000);
