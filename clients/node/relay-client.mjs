#!/usr/bin/env node
// S2S Relay client: sign a request body and POST it to the relay's ingest (Node.js 18+, no packages).
//
//   import { send } from "./relay-client.mjs";
//   const { status, answer } = await send("https://…/v1/events", secret, bodyBuffer);
//   const { status, answer } = await eventStatus("https://…/v1/events", secret, "order-1001");
//
//   node relay-client.mjs --url URL --secret SECRET FILE.json      # or RELAY_URL / RELAY_SECRET
//   node relay-client.mjs --url URL --secret SECRET --status EVENT_ID
//   node relay-client.mjs --source eu ...                            # or RELAY_SOURCE: sign as the source eu
//
// --status asks what became of one event (GET /v1/events/{event_id}) and prints its journey: exit 0 when the
// relay knows it, 1 when it does not (404) or refuses the request, 2 when it cannot be reached.
//
// FILE.json is an ingest body, {"events": [...]}, sent byte for byte as it is. The command prints the
// relay's JSON answer, lists on stderr every event that was rejected or that a vendor found invalid, and
// exits 0 on 2xx, 1 on 4xx, 2 when the relay cannot be reached or still answers 5xx after the retries.
// A 503 is sent again, freshly signed, after its Retry-After (at most MAX_ATTEMPTS sends): delay-seconds or an
// HTTP-date (RFC 9110), 1 s when missing or malformed, at most --max-retry-wait (30 s). --retry-wait VALUE
// prints the wait a Retry-After of VALUE makes (at --timestamp, default now), sending nothing.
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

export const HEADER = "X-Relay-Signature";
export const SOURCE_HEADER = "X-Relay-Source"; // the source that signs, when it is not `default`
const sourceHeader = (source) => (source ? { [SOURCE_HEADER]: source } : {});
export const MAX_ATTEMPTS = 5;
export const MAX_RETRY_AFTER_SECONDS = 30;
export const DEFAULT_RETRY_SECONDS = 1; // a 503 without a usable Retry-After
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const HTTP_DATES = [
  // RFC 9110 5.6.7: IMF-fixdate, then the obsolete RFC 850 and asctime forms
  /^[A-Z][a-z]{2}, ([0-9]{2}) ([A-Z][a-z]{2}) ([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT$/,
  /^[A-Z][a-z]+, ([0-9]{2})-([A-Z][a-z]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT$/,
  /^[A-Z][a-z]{2} ([A-Z][a-z]{2}) ([ 0-9][0-9]) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([0-9]{4})$/,
];

// Unix seconds of an HTTP-date, or null. A two-digit year more than 50 years ahead of now is the most recent
// past year with those digits (RFC 9110 5.6.7).
export function httpDate(text, now) {
  for (let index = 0; index < HTTP_DATES.length; index++) {
    const m = HTTP_DATES[index].exec(text);
    if (!m) continue;
    let [day, month, year, hh, mm, ss] = index === 2 ? [m[2], m[1], m[6], m[3], m[4], m[5]] : m.slice(1);
    if (!MONTHS.includes(month)) return null;
    let y = Number(year);
    if (index === 1) {
      const thisYear = new Date(now * 1000).getUTCFullYear();
      y += Math.floor(thisYear / 100) * 100;
      if (y > thisYear + 50) y -= 100;
    }
    const [d, h, mi, s] = [Number(day), Number(hh), Number(mm), Number(ss)];
    if (d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return null;
    return Date.UTC(y, MONTHS.indexOf(month), d, h, mi, s) / 1000;
  }
  return null;
}

// Seconds to wait before resending a 503 answered with "Retry-After: value" (null: no such header).
export function retryWait(value, now = Date.now() / 1000, cap = MAX_RETRY_AFTER_SECONDS) {
  const text = (value ?? "").replace(/^[ \t]+|[ \t]+$/g, "");
  let wait;
  if (/^[0-9]+$/.test(text)) {
    const digits = text.replace(/^0+/, "") || "0"; // leading zeros allowed; more than 9 digits is the cap
    wait = digits.length <= 9 ? Number(digits) : cap;
  } else {
    const at = httpDate(text, now);
    wait = at === null ? DEFAULT_RETRY_SECONDS : Math.max(0, at - now);
  }
  return Math.min(wait, cap);
}

// t=<unix seconds>,v1=<lower-case hex HMAC-SHA256 of "<t>.<body>">, keyed with the secret's UTF-8 bytes.
export function sign(body, secret, timestamp) {
  const t = timestamp ?? Math.floor(Date.now() / 1000);
  const mac = createHmac("sha256", Buffer.from(secret, "utf8"));
  mac.update(Buffer.concat([Buffer.from(`${t}.`, "ascii"), Buffer.from(body)]));
  return `t=${t},v1=${mac.digest("hex")}`;
}

// "/v1/events/" and the event_id percent-encoded: every UTF-8 byte but A-Z a-z 0-9 - . _ ~ as %XX.
export function statusPath(eventId) {
  const encoded = encodeURIComponent(eventId).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
  return "/v1/events/" + encoded;
}

// The X-Relay-Signature of GET /v1/events/{event_id}: the HMAC of "<t>.GET <statusPath(eventId)>".
export function signStatus(eventId, secret, timestamp) {
  return sign(Buffer.from(`GET ${statusPath(eventId)}`, "utf8"), secret, timestamp);
}

// GET what became of eventId (source: whose event, signing with its secret); url is the ingest URL (ending in
// /v1/events). 200: the journey; 404: unknown id.
export async function eventStatus(url, secret, eventId, { source } = {}) {
  const target = url.replace(/\/+$/, "") + statusPath(eventId).slice("/v1/events".length);
  const headers = { [HEADER]: signStatus(eventId, secret), ...sourceHeader(source) };
  const response = await fetch(target, { headers, signal: AbortSignal.timeout(30000) });
  const text = await response.text();
  try {
    return { status: response.status, answer: JSON.parse(text || "{}") };
  } catch {
    return { status: response.status, answer: { error: text } };
  }
}

// POST body, signed anew for every send (source: the source signing, when not `default`); a 503 is resent after
// its Retry-After. Throws when unreachable.
export async function send(
  url,
  secret,
  body,
  { sleep = (s) => new Promise((r) => setTimeout(r, s * 1000)), maxWait = MAX_RETRY_AFTER_SECONDS, log = () => {}, source } = {},
) {
  for (let attempt = 1; ; attempt++) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", [HEADER]: sign(body, secret), ...sourceHeader(source) },
      body,
      signal: AbortSignal.timeout(30000),
    });
    const text = await response.text();
    let answer;
    try {
      answer = JSON.parse(text || "{}");
    } catch {
      answer = { error: text };
    }
    if (response.status !== 503 || attempt >= MAX_ATTEMPTS) return { status: response.status, answer };
    const wait = response.headers.get("retry-after");
    const seconds = retryWait(wait, Date.now() / 1000, maxWait);
    log(`503: sending again in ${seconds} s (Retry-After: ${wait ?? "none"})`);
    await sleep(seconds);
  }
}

// One line per event the relay rejected, and per vendor that found an accepted event invalid.
export function problems(answer) {
  const fields = (errors) => (errors ?? []).map((e) => `${e.field}: ${e.message}`).join("; ");
  const lines = (answer.rejected ?? []).map((r) => `rejected events[${r.index}] ${r.event_id}: ${fields(r.errors)}`);
  for (const a of answer.accepted ?? []) {
    // by name, as every client lists them
    for (const [vendor, errors] of Object.entries(a.invalid ?? {}).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) {
      lines.push(`invalid for ${vendor}: events[${a.index}] ${a.event_id}: ${fields(errors)}`);
    }
  }
  return lines;
}

const HELP = `usage: relay-client.mjs [options] FILE.json
       relay-client.mjs [options] --status EVENT_ID

Sign FILE.json (an ingest body, {"events": [...]}) and POST it to the S2S Relay ingest, or ask what
became of one event. Prints the relay's JSON answer, and on stderr each event it rejected or a vendor
found invalid.

options:
  --url URL                 the ingest URL (or RELAY_URL)
  --secret SECRET           the signing secret (or RELAY_SECRET)
  --source NAME             sign as this source, not default (or RELAY_SOURCE)
  --status EVENT_ID         print what became of this event instead of sending
  --print-signature         print the header value, send nothing
  --timestamp T             sign at this unix time (with --print-signature or --retry-wait)
  --max-retry-wait SECONDS  the longest wait a 503's Retry-After may ask (default 30)
  --retry-wait VALUE        print the wait a Retry-After of VALUE makes, send nothing
  -h, --help                print this help

exit: 0 on 2xx, 1 on 4xx, 2 when the relay cannot be reached or answers 5xx after the retries
`;

async function main(argv) {
  if (argv.includes("-h") || argv.includes("--help")) {
    process.stdout.write(HELP);
    return 0;
  }
  const args = { url: process.env.RELAY_URL, secret: process.env.RELAY_SECRET, source: process.env.RELAY_SOURCE, file: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--url") args.url = argv[++i];
    else if (a === "--secret") args.secret = argv[++i];
    else if (a === "--source") args.source = argv[++i];
    else if (a === "--timestamp") args.timestamp = Number(argv[++i]);
    else if (a === "--print-signature") args.printSignature = true;
    else if (a === "--status") args.status = argv[++i];
    else if (a === "--max-retry-wait") args.maxWait = Number(argv[++i]);
    else if (a === "--retry-wait") args.retryWait = argv[++i];
    else if (a.startsWith("-")) return usage(`unknown option ${a}`);
    else if (!args.file) args.file = a;
    else return usage(`unexpected argument ${a}`);
  }
  if (args.retryWait !== undefined) {
    console.log(String(retryWait(args.retryWait, args.timestamp ?? Date.now() / 1000, args.maxWait ?? MAX_RETRY_AFTER_SECONDS)));
    return 0;
  }
  if (args.status !== undefined && args.secret && (args.url || args.printSignature)) return status(args);
  if (!args.file || !args.secret || !(args.url || args.printSignature)) {
    return usage("--url and --secret (or RELAY_URL and RELAY_SECRET) and FILE.json are required");
  }
  let body;
  try {
    body = readFileSync(args.file);
  } catch (e) {
    console.error(`cannot read ${args.file}: ${e.code}`);
    return 2;
  }
  if (args.printSignature) {
    console.log(sign(body, args.secret, args.timestamp));
    return 0;
  }
  let result;
  try {
    const log = (l) => console.error(l);
    result = await send(args.url, args.secret, body, { maxWait: args.maxWait ?? MAX_RETRY_AFTER_SECONDS, log, source: args.source });
  } catch (e) {
    console.error(`cannot reach ${args.url}: ${e.cause?.code ?? e.name}`);
    return 2;
  }
  console.log(JSON.stringify(result.answer));
  for (const line of problems(result.answer)) console.error(line);
  const s = result.status;
  return s >= 200 && s < 300 ? 0 : s >= 400 && s < 500 ? 1 : 2;
}

async function status(args) {
  if (args.printSignature) {
    console.log(signStatus(args.status, args.secret, args.timestamp));
    return 0;
  }
  let result;
  try {
    result = await eventStatus(args.url, args.secret, args.status, { source: args.source });
  } catch (e) {
    console.error(`cannot reach ${args.url}: ${e.cause?.code ?? e.name}`);
    return 2;
  }
  console.log(JSON.stringify(result.answer));
  const s = result.status;
  if (s !== 200) console.error(`${s}: ${result.answer.error ?? ""}`);
  return s === 200 ? 0 : s >= 400 && s < 500 ? 1 : 2;
}

function usage(message) {
  console.error(`usage: relay-client.mjs --url URL --secret SECRET [--source NAME] FILE.json\n${message}`);
  return 2;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
