#!/usr/bin/env bash
# S2S Relay client: sign a request body and POST it to the relay's ingest (bash, curl and openssl only).
#
#   relay-send.sh --url URL --secret SECRET FILE.json      # or RELAY_URL / RELAY_SECRET
#   relay-send.sh --secret SECRET --timestamp T --print-signature FILE.json
#   relay-send.sh --url URL --secret SECRET --status EVENT_ID
#   relay-send.sh --source eu ...                          # or RELAY_SOURCE: sign as the source eu
#
# FILE.json is an ingest body, {"events": [...]}, sent byte for byte as it is. Prints the relay's JSON
# answer, and on stderr one line per event that was rejected or found invalid, naming its fields. Exits 0 on 2xx, 1 on 4xx, 2 when the relay cannot be reached or still
# answers 5xx after the retries. A 503 is sent again, freshly signed, after its Retry-After (5 sends at most):
# delay-seconds or an HTTP-date (RFC 9110), 1 s when missing or malformed, at most --max-retry-wait (30 s,
# whole seconds). --retry-wait VALUE prints that wait for VALUE (at --timestamp, default now), sending nothing.
# --status asks what became of one event (GET /v1/events/{event_id}) and prints its journey: exit 0 when the
# relay knows it, 1 when it does not (404) or refuses the request, 2 when it cannot be reached.
set -euo pipefail

MAX_ATTEMPTS=5
MAX_RETRY_AFTER_SECONDS=30
DEFAULT_RETRY_SECONDS=1
url="${RELAY_URL:-}" secret="${RELAY_SECRET:-}" source="${RELAY_SOURCE:-}" file="" timestamp="" print_signature="" event_id="" status_mode=""
max_wait="$MAX_RETRY_AFTER_SECONDS" retry_value="" retry_mode=""

HELP=$(cat <<'TEXT'
usage: relay-send.sh [options] FILE.json
       relay-send.sh [options] --status EVENT_ID

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
TEXT
)
usage() { echo "usage: relay-send.sh --url URL --secret SECRET [--source NAME] FILE.json" >&2; echo "$1" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --url) url="$2"; shift 2 ;;
    --secret) secret="$2"; shift 2 ;;
    --source) source="$2"; shift 2 ;;
    --timestamp) timestamp="$2"; shift 2 ;;
    --print-signature) print_signature=1; shift ;;
    --status) event_id="$2"; status_mode=1; shift 2 ;;
    --max-retry-wait) max_wait="$2"; shift 2 ;;
    --retry-wait) retry_value="$2"; retry_mode=1; shift 2 ;;
    -h|--help) printf '%s\n' "$HELP"; exit 0 ;;
    -*) usage "unknown option $1" ;;
    *) [ -z "$file" ] || usage "unexpected argument $1"; file="$1"; shift ;;
  esac
done
[[ "$max_wait" =~ ^[0-9]+$ ]] || usage "--max-retry-wait must be a whole number of seconds"
# the source that signs, when it is not `default` (docs/connections.md)
source_header=()
[ -z "$source" ] || source_header=(-H "X-Relay-Source: $source")

# Unix seconds of an HTTP-date (RFC 9110 5.6.7: IMF-fixdate, RFC 850, asctime); fails when $1 is not one. A
# two-digit year more than 50 years ahead of $2 (now) is the most recent past year with those digits.
http_date() {
  local text="$1" now="$2" day month year hh mm ss this m
  local imf='^[A-Z][a-z]{2}, ([0-9]{2}) ([A-Z][a-z]{2}) ([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT$'
  local rfc850='^[A-Z][a-z]+, ([0-9]{2})-([A-Z][a-z]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT$'
  local asctime='^[A-Z][a-z]{2} ([A-Z][a-z]{2}) ([ 0-9][0-9]) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([0-9]{4})$'
  if [[ $text =~ $imf ]]; then
    day=${BASH_REMATCH[1]} month=${BASH_REMATCH[2]} year=${BASH_REMATCH[3]}
    hh=${BASH_REMATCH[4]} mm=${BASH_REMATCH[5]} ss=${BASH_REMATCH[6]}
  elif [[ $text =~ $rfc850 ]]; then
    day=${BASH_REMATCH[1]} month=${BASH_REMATCH[2]} year=${BASH_REMATCH[3]}
    hh=${BASH_REMATCH[4]} mm=${BASH_REMATCH[5]} ss=${BASH_REMATCH[6]}
    this=$(date -u -d "@$now" +%Y)
    year=$(( 10#$year + this / 100 * 100 ))
    (( year > this + 50 )) && year=$(( year - 100 ))
  elif [[ $text =~ $asctime ]]; then
    month=${BASH_REMATCH[1]} day=${BASH_REMATCH[2]} hh=${BASH_REMATCH[3]} mm=${BASH_REMATCH[4]}
    ss=${BASH_REMATCH[5]} year=${BASH_REMATCH[6]}
  else
    return 1
  fi
  case "$month" in
    Jan) m=1 ;; Feb) m=2 ;; Mar) m=3 ;; Apr) m=4 ;; May) m=5 ;; Jun) m=6 ;;
    Jul) m=7 ;; Aug) m=8 ;; Sep) m=9 ;; Oct) m=10 ;; Nov) m=11 ;; Dec) m=12 ;; *) return 1 ;;
  esac
  day=$(( 10#${day// /} ))
  (( day >= 1 && day <= 31 && 10#$hh <= 23 && 10#$mm <= 59 && 10#$ss <= 60 )) || return 1
  date -u -d "$(printf '%04d-%02d-%02d %s:%s:%s' "$((10#$year))" "$m" "$day" "$hh" "$mm" "$ss")" +%s
}

# Whole seconds to wait before resending a 503 answered with "Retry-After: $1" (empty: no such header), at
# most $3; $2 is now.
retry_wait() {
  local text="$1" now="$2" cap="$3" digits at wait="$DEFAULT_RETRY_SECONDS"
  text="${text#"${text%%[! $'\t']*}"}"; text="${text%"${text##*[! $'\t']}"}"
  if [[ $text =~ ^[0-9]+$ ]]; then
    digits=$(printf '%s' "$text" | sed 's/^0*//'); digits="${digits:-0}"  # leading zeros allowed
    if [ "${#digits}" -le 9 ]; then wait=$digits; else wait=$cap; fi
  elif at=$(http_date "$text" "$now"); then
    wait=$(( at > now ? at - now : 0 ))
  fi
  echo $(( wait < cap ? wait : cap ))
}

if [ -n "$retry_mode" ]; then
  retry_wait "$retry_value" "${timestamp:-$(date +%s)}" "$max_wait"; exit 0
fi

# "/v1/events/" and the event_id percent-encoded: every UTF-8 byte but A-Z a-z 0-9 - . _ ~ as %XX
status_path() {
  local LC_ALL=C id="$1" out="" c i
  for (( i = 0; i < ${#id}; i++ )); do
    c="${id:i:1}"
    case "$c" in [A-Za-z0-9._~-]) out+="$c" ;; *) out+=$(printf '%%%02X' "'$c") ;; esac
  done
  printf '/v1/events/%s' "$out"
}

if [ -n "$status_mode" ] && [ -n "$secret" ] && { [ -n "$url" ] || [ -n "$print_signature" ]; }; then
  path=$(status_path "$event_id")
  sign_status() { printf 't=%s,v1=%s' "$1" "$(printf 'GET %s' "$path" | { printf '%s.' "$1"; cat; } | openssl dgst -sha256 -hmac "$secret" -hex | sed 's/^.* //')"; }
  if [ -n "$print_signature" ]; then sign_status "${timestamp:-$(date +%s)}"; echo; exit 0; fi
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  if ! status=$(curl -sS -o "$tmp/body" -w '%{http_code}' --max-time 30 \
      -H "X-Relay-Signature: $(sign_status "$(date +%s)")" ${source_header[@]+"${source_header[@]}"} \
      "${url%/}${path#/v1/events}"); then
    echo "cannot reach $url" >&2; exit 2
  fi
  cat "$tmp/body"; echo
  case "$status" in 200) exit 0 ;; 4??) echo "$status: see \"error\" in the answer" >&2; exit 1 ;; *) exit 2 ;; esac
fi
[ -n "$file" ] && [ -n "$secret" ] && { [ -n "$url" ] || [ -n "$print_signature" ]; } \
  || usage "--url and --secret (or RELAY_URL and RELAY_SECRET) and FILE.json are required"
[ -r "$file" ] || { echo "cannot read $file" >&2; exit 2; }

# One line on stderr per event the relay rejected, and per vendor that found an accepted event invalid, as the
# other clients print them: a small reader of the relay's JSON answer, in awk (bytes: LC_ALL=C).
PROBLEMS_AWK=$(cat <<'AWK'
function ws() { while (pos <= n && substr(s, pos, 1) ~ /[ \t\r\n]/) pos++ }
function utf8(c) {
  if (c < 128) return sprintf("%c", c)
  if (c < 2048) return sprintf("%c%c", 192 + int(c / 64), 128 + c % 64)
  if (c < 65536) return sprintf("%c%c%c", 224 + int(c / 4096), 128 + int(c / 64) % 64, 128 + c % 64)
  return sprintf("%c%c%c%c", 240 + int(c / 262144), 128 + int(c / 4096) % 64, 128 + int(c / 64) % 64, 128 + c % 64)
}
function hex(h,   i, v) { v = 0; for (i = 1; i <= 4; i++) v = v * 16 + index("0123456789abcdef", tolower(substr(h, i, 1))) - 1; return v }
function str(   out, c, e, u, lo) {
  pos++; out = ""
  while (pos <= n) {
    c = substr(s, pos, 1)
    if (c == "\"") { pos++; return out }
    if (c != "\\") { out = out c; pos++; continue }
    e = substr(s, pos + 1, 1); pos += 2
    if (e == "u") {
      u = hex(substr(s, pos, 4)); pos += 4
      if (u >= 55296 && u < 56320 && substr(s, pos, 2) == "\\u") { lo = hex(substr(s, pos + 2, 4)); pos += 6; u = 65536 + (u - 55296) * 1024 + (lo - 56320) }
      out = out utf8(u)
    } else if (e == "n") out = out "\n"; else if (e == "t") out = out "\t"; else if (e == "r") out = out "\r"
    else if (e == "b") out = out "\b"; else if (e == "f") out = out "\f"; else out = out e
  }
  return out
}
function val(path,   c, k, i) {
  ws(); c = substr(s, pos, 1)
  if (c == "{") {
    pos++; ws(); if (substr(s, pos, 1) == "}") { pos++; return }
    while (pos <= n) {
      ws(); k = str(); keys[path "/" nk[path]++] = k; ws(); pos++; val(path "/" k); ws()
      c = substr(s, pos, 1); pos++; if (c != ",") return
    }
    return
  }
  if (c == "[") {
    pos++; ws(); i = 0; if (substr(s, pos, 1) == "]") { pos++; len[path] = 0; return }
    while (pos <= n) { val(path "/" i); i++; ws(); c = substr(s, pos, 1); pos++; if (c != ",") break }
    len[path] = i; return
  }
  if (c == "\"") { v[path] = str(); return }
  k = pos; while (pos <= n && substr(s, pos, 1) !~ /[],} \t\r\n]/) pos++; v[path] = substr(s, k, pos - k)
}
function fields(path,   j, out) {
  out = ""
  for (j = 0; j < len[path]; j++) out = out (j ? "; " : "") v[path "/" j "/field"] ": " v[path "/" j "/message"]
  return out
}
{ s = s $0 "\n" }
END {
  n = length(s); pos = 1; val("")
  for (i = 0; i < len["/rejected"]; i++)
    print "rejected events[" v["/rejected/" i "/index"] "] " v["/rejected/" i "/event_id"] ": " fields("/rejected/" i "/errors")
  for (i = 0; i < len["/accepted"]; i++) {
    a = "/accepted/" i
    n_v = nk[a "/invalid"]
    for (j = 0; j < n_v; j++) sorted[j] = keys[a "/invalid/" j]
    for (j = 1; j < n_v; j++) {  # by name, as every client lists them (insertion sort)
      x = sorted[j]; for (m = j - 1; m >= 0 && sorted[m] > x; m--) sorted[m + 1] = sorted[m]; sorted[m + 1] = x
    }
    for (j = 0; j < n_v; j++) {
      vendor = sorted[j]
      print "invalid for " vendor ": events[" v[a "/index"] "] " v[a "/event_id"] ": " fields(a "/invalid/" vendor)
    }
  }
}
AWK
)

# t=<unix seconds>,v1=<lower-case hex HMAC-SHA256 of "<t>.<body>">, keyed with the secret's UTF-8 bytes
sign() {
  local t="$1" digest
  digest=$({ printf '%s.' "$t"; cat "$file"; } | openssl dgst -sha256 -hmac "$secret" -hex | sed 's/^.* //')
  printf 't=%s,v1=%s' "$t" "$digest"
}

if [ -n "$print_signature" ]; then
  sign "${timestamp:-$(date +%s)}"; echo; exit 0
fi

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for attempt in $(seq 1 "$MAX_ATTEMPTS"); do
  if ! status=$(curl -sS -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' --max-time 30 \
      -H 'Content-Type: application/json' -H "X-Relay-Signature: $(sign "$(date +%s)")" \
      ${source_header[@]+"${source_header[@]}"} --data-binary "@$file" "$url"); then
    echo "cannot reach $url" >&2; exit 2
  fi
  [ "$status" = 503 ] && [ "$attempt" -lt "$MAX_ATTEMPTS" ] || break
  value=$(tr -d '\r' < "$tmp/headers" | sed -n 's/^[Rr][Ee][Tt][Rr][Yy]-[Aa][Ff][Tt][Ee][Rr]:\(.*\)$/\1/p' | head -n 1)
  seconds=$(retry_wait "$value" "$(date +%s)" "$max_wait")
  shown="$value"; grep -qi '^retry-after:' "$tmp/headers" || shown=" none"
  echo "503: sending again in $seconds s (Retry-After:$shown)" >&2
  sleep "$seconds"
done
cat "$tmp/body"; echo
LC_ALL=C awk "$PROBLEMS_AWK" "$tmp/body" >&2
case "$status" in 2??) exit 0 ;; 4??) exit 1 ;; *) exit 2 ;; esac
