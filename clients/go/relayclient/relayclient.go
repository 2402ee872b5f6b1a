// Package relayclient signs a request body and POSTs it to the S2S Relay ingest (standard library only).
//
//	status, answer, err := relayclient.Send(url, secret, body)
//	status, journey, err := relayclient.EventStatus(url, secret, "order-1001")
//
// A 503 is sent again, freshly signed, after its Retry-After (at most MaxAttempts sends).
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
	"strconv"
	"strings"
	"time"
)

const (
	Header               = "X-Relay-Signature"
	MaxAttempts          = 5
	MaxRetryAfterSeconds = 30
)

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
	target := strings.TrimRight(url, "/") + strings.TrimPrefix(StatusPath(eventID), "/v1/events")
	request, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		return 0, nil, err
	}
	request.Header.Set(Header, SignStatus(eventID, secret, time.Now().Unix()))
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
	client := &http.Client{Timeout: 30 * time.Second}
	for attempt := 1; ; attempt++ {
		request, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		request.Header.Set("Content-Type", "application/json")
		request.Header.Set(Header, Sign(body, secret, time.Now().Unix()))
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
		wait, convErr := strconv.Atoi(strings.TrimSpace(response.Header.Get("Retry-After")))
		if convErr != nil || wait < 0 {
			wait = 1
		}
		if wait > MaxRetryAfterSeconds {
			wait = MaxRetryAfterSeconds
		}
		time.Sleep(time.Duration(wait) * time.Second)
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
		for vendor, errors := range invalid {
			lines = append(lines, fmt.Sprintf("invalid for %s: events[%v] %v: %s", vendor, m["index"], m["event_id"], fields(errors)))
		}
	}
	return lines
}
