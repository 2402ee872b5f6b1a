// Package relayclient signs a request body and POSTs it to the S2S Relay ingest (standard library only).
//
//	status, answer, err := relayclient.Send(url, secret, body)
//	status, journey, err := relayclient.EventStatus(url, secret, "order-1001")
//
// A 503 is sent again, freshly signed, after its Retry-After (at most MaxAttempts sends): delay-seconds or an
// HTTP-date (RFC 9110), 1 s when missing or malformed, at most MaxRetryAfterSeconds (RetryWait).
package relayclient

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	Header               = "X-Relay-Signature"
	SourceHeader         = "X-Relay-Source" // the source that signs, when it is not `default`
	MaxAttempts          = 5
	MaxRetryAfterSeconds = 30
	DefaultRetrySeconds  = 1 // a 503 without a usable Retry-After
)

var months = []string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// RFC 9110 5.6.7: IMF-fixdate, then the obsolete RFC 850 and asctime forms
var httpDates = []*regexp.Regexp{
	regexp.MustCompile(`^[A-Z][a-z]{2}, ([0-9]{2}) ([A-Z][a-z]{2}) ([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT$`),
	regexp.MustCompile(`^[A-Z][a-z]+, ([0-9]{2})-([A-Z][a-z]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT$`),
	regexp.MustCompile(`^[A-Z][a-z]{2} ([A-Z][a-z]{2}) ([ 0-9][0-9]) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([0-9]{4})$`),
}

var delaySeconds = regexp.MustCompile(`^[0-9]+$`)

// HTTPDate returns the unix seconds of an HTTP-date and true, or false when text is not one. A two-digit year
// more than 50 years ahead of now is the most recent past year with those digits (RFC 9110 5.6.7).
func HTTPDate(text string, now float64) (float64, bool) {
	for index, pattern := range httpDates {
		m := pattern.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		day, month, year, hh, mm, ss := m[1], m[2], m[3], m[4], m[5], m[6]
		if index == 2 {
			day, month, year, hh, mm, ss = m[2], m[1], m[6], m[3], m[4], m[5]
		}
		monthIndex := -1
		for i, name := range months {
			if name == month {
				monthIndex = i
			}
		}
		if monthIndex < 0 {
			return 0, false
		}
		y, _ := strconv.Atoi(year)
		if index == 1 {
			thisYear := time.Unix(int64(now), 0).UTC().Year()
			y += thisYear / 100 * 100
			if y > thisYear+50 {
				y -= 100
			}
		}
		d, _ := strconv.Atoi(strings.TrimSpace(day))
		h, _ := strconv.Atoi(hh)
		mi, _ := strconv.Atoi(mm)
		s, _ := strconv.Atoi(ss)
		if d < 1 || d > 31 || h > 23 || mi > 59 || s > 60 {
			return 0, false
		}
		return float64(time.Date(y, time.Month(monthIndex+1), d, h, mi, s, 0, time.UTC).Unix()), true
	}
	return 0, false
}

// RetryWait returns the seconds to wait before resending a 503 answered with "Retry-After: value" ("" when
// there is no such header), at most limit.
func RetryWait(value string, now, limit float64) float64 {
	text := strings.Trim(value, " \t")
	wait := float64(DefaultRetrySeconds)
	if delaySeconds.MatchString(text) {
		digits := strings.TrimLeft(text, "0") // leading zeros allowed; more than 9 digits is the limit
		if digits == "" {
			digits = "0"
		}
		if len(digits) <= 9 {
			n, _ := strconv.Atoi(digits)
			wait = float64(n)
		} else {
			wait = limit
		}
	} else if at, ok := HTTPDate(text, now); ok {
		wait = at - now
		if wait < 0 {
			wait = 0
		}
	}
	if wait > limit {
		wait = limit
	}
	return wait
}

// Options of SendWith: the longest wait a Retry-After may ask (Send uses MaxRetryAfterSeconds; 0 resends at
// once), and where to say that a 503 is sent again.
type Options struct {
	MaxWait float64
	Log     func(string)
	Source  string // the source that signs ("" is the default source)
}

// Sign returns the X-Relay-Signature value: t=<unix seconds>,v1=<lower-case hex HMAC-SHA256 of "<t>.<body>">,
// keyed with the secret's UTF-8 bytes. Sign the exact bytes you send.
func Sign(body []byte, secret string, timestamp int64) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(timestamp, 10) + "."))
	mac.Write(body)
	return fmt.Sprintf("t=%d,v1=%s", timestamp, hex.EncodeToString(mac.Sum(nil)))
}

// StatusPath is "/v1/events/" and the event_id percent-encoded: every UTF-8 byte but A-Z a-z 0-9 - . _ ~ as %XX.
func StatusPath(eventID string) string {
	var b strings.Builder
	b.WriteString("/v1/events/")
	for _, c := range []byte(eventID) {
		unreserved := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0
		if unreserved {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// SignStatus returns the X-Relay-Signature of GET /v1/events/{event_id}: the HMAC of "<t>.GET <StatusPath>".
func SignStatus(eventID, secret string, timestamp int64) string {
	return Sign([]byte("GET "+StatusPath(eventID)), secret, timestamp)
}

// EventStatus GETs what became of eventID; url is the ingest URL (ending in /v1/events). It returns 200 with
// the journey, 404 for an id the relay does not know, or an error when the relay cannot be reached.
func EventStatus(url, secret, eventID string) (int, map[string]any, error) {
	return EventStatusOf(url, secret, eventID, "")
}

// EventStatusOf is EventStatus for the event of source (signing with its secret; "" is the default source).
func EventStatusOf(url, secret, eventID, source string) (int, map[string]any, error) {
	target := strings.TrimRight(url, "/") + strings.TrimPrefix(StatusPath(eventID), "/v1/events")
	request, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		return 0, nil, err
	}
	request.Header.Set(Header, SignStatus(eventID, secret, time.Now().Unix()))
	if source != "" {
		request.Header.Set(SourceHeader, source)
	}
	response, err := (&http.Client{Timeout: 30 * time.Second}).Do(request)
	if err != nil {
		return 0, nil, err
	}
	defer response.Body.Close()
	raw, _ := io.ReadAll(response.Body)
	answer := map[string]any{}
	if json.Unmarshal(raw, &answer) != nil {
		answer = map[string]any{"error": string(raw)}
	}
	return response.StatusCode, answer, nil
}

// Send POSTs body, signed anew for every send; it returns the last status and JSON answer, or an error when
// the relay cannot be reached.
func Send(url, secret string, body []byte) (int, map[string]any, error) {
	return SendWith(url, secret, body, Options{MaxWait: MaxRetryAfterSeconds})
}

// SendWith is Send with Options.
func SendWith(url, secret string, body []byte, options Options) (int, map[string]any, error) {
	limit := options.MaxWait
	client := &http.Client{Timeout: 30 * time.Second}
	for attempt := 1; ; attempt++ {
		request, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		request.Header.Set("Content-Type", "application/json")
		request.Header.Set(Header, Sign(body, secret, time.Now().Unix()))
		if options.Source != "" {
			request.Header.Set(SourceHeader, options.Source)
		}
		response, err := client.Do(request)
		if err != nil {
			return 0, nil, err
		}
		raw, _ := io.ReadAll(response.Body)
		response.Body.Close()
		answer := map[string]any{}
		if json.Unmarshal(raw, &answer) != nil {
			answer = map[string]any{"error": string(raw)}
		}
		if response.StatusCode != http.StatusServiceUnavailable || attempt >= MaxAttempts {
			return response.StatusCode, answer, nil
		}
		value, present := response.Header.Get("Retry-After"), len(response.Header.Values("Retry-After")) > 0
		wait := RetryWait(value, float64(time.Now().UnixNano())/1e9, limit)
		if options.Log != nil {
			shown := value
			if !present {
				shown = "none"
			}
			options.Log(fmt.Sprintf("503: sending again in %s s (Retry-After: %s)", strconv.FormatFloat(wait, 'f', -1, 64), shown))
		}
		time.Sleep(time.Duration(wait * float64(time.Second)))
	}
}

// Problems returns one line per event the relay rejected, and per vendor that found an accepted event invalid.
func Problems(answer map[string]any) []string {
	fields := func(errors any) string {
		parts := []string{}
		list, _ := errors.([]any)
		for _, e := range list {
			m, _ := e.(map[string]any)
			parts = append(parts, fmt.Sprintf("%v: %v", m["field"], m["message"]))
		}
		return strings.Join(parts, "; ")
	}
	lines := []string{}
	rejected, _ := answer["rejected"].([]any)
	for _, r := range rejected {
		m, _ := r.(map[string]any)
		lines = append(lines, fmt.Sprintf("rejected events[%v] %v: %s", m["index"], m["event_id"], fields(m["errors"])))
	}
	accepted, _ := answer["accepted"].([]any)
	for _, a := range accepted {
		m, _ := a.(map[string]any)
		invalid, _ := m["invalid"].(map[string]any)
		vendors := make([]string, 0, len(invalid))
		for vendor := range invalid {
			vendors = append(vendors, vendor)
		}
		sort.Strings(vendors) // by name, as every client lists them (a Go map keeps no order)
		for _, vendor := range vendors {
			lines = append(lines, fmt.Sprintf("invalid for %s: events[%v] %v: %s", vendor, m["index"], m["event_id"], fields(invalid[vendor])))
		}
	}
	return lines
}
