// relay-send signs FILE.json and POSTs it to the S2S Relay ingest.
//
//	relay-send --url URL --secret SECRET FILE.json      (or RELAY_URL / RELAY_SECRET)
//	relay-send --secret SECRET --timestamp T --print-signature FILE.json
//	relay-send --url URL --secret SECRET --status EVENT_ID
//	relay-send --source eu ...                          (or RELAY_SOURCE: sign as the source eu)
//
// FILE.json is an ingest body, {"events": [...]}, sent byte for byte as it is. Prints the relay's JSON answer,
// lists on stderr every event that was rejected or found invalid, and exits 0 on 2xx, 1 on 4xx, 2 when the
// relay cannot be reached or still answers 5xx after the retries. --status asks what became of one event
// (GET /v1/events/{event_id}) and prints its journey: exit 0 when the relay knows it, 1 when it does not (404)
// or refuses the request, 2 when it cannot be reached. --max-retry-wait caps the wait a 503's Retry-After
// asks (30 s); --retry-wait VALUE prints that wait for VALUE (at --timestamp, default now), sending nothing.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/s2s-relay/clients/go/relayclient"
)

func main() {
	os.Exit(run())
}

const help = `usage: relay-send [options] FILE.json
       relay-send [options] --status EVENT_ID

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
`

func run() int {
	// the help is written here: flag's own would print each default, RELAY_SECRET's value among them
	flag.CommandLine.Init("relay-send", flag.ContinueOnError)
	flag.CommandLine.SetOutput(io.Discard)
	url := flag.String("url", os.Getenv("RELAY_URL"), "the ingest URL (RELAY_URL)")
	secret := flag.String("secret", os.Getenv("RELAY_SECRET"), "the signing secret (RELAY_SECRET)")
	source := flag.String("source", os.Getenv("RELAY_SOURCE"), "sign as this source, not `default` (RELAY_SOURCE)")
	printSignature := flag.Bool("print-signature", false, "print the header value, send nothing")
	timestamp := flag.Int64("timestamp", 0, "sign with this unix time (with --print-signature)")
	eventID := flag.String("status", "", "print what became of this event instead of sending")
	maxWait := flag.Float64("max-retry-wait", relayclient.MaxRetryAfterSeconds, "the longest wait a Retry-After may ask (s)")
	retryWait := flag.String("retry-wait", "\x00", "print the wait a Retry-After of VALUE makes, send nothing")
	if err := flag.CommandLine.Parse(os.Args[1:]); err == flag.ErrHelp {
		fmt.Print(help)
		return 0
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "usage: relay-send --url URL --secret SECRET [--source NAME] FILE.json")
		fmt.Fprintln(os.Stderr, strings.Replace(err.Error(), "flag provided but not defined: -", "unknown option --", 1))
		return 2
	}
	if *retryWait != "\x00" {
		now := float64(*timestamp)
		if *timestamp == 0 {
			now = float64(time.Now().UnixNano()) / 1e9
		}
		fmt.Println(strconv.FormatFloat(relayclient.RetryWait(*retryWait, now, *maxWait), 'f', -1, 64))
		return 0
	}
	if *eventID != "" && *secret != "" && (*url != "" || *printSignature) {
		return status(*url, *secret, *eventID, *source, *printSignature, *timestamp)
	}
	if flag.NArg() != 1 || *secret == "" || (*url == "" && !*printSignature) {
		fmt.Fprintln(os.Stderr, "usage: relay-send --url URL --secret SECRET [--source NAME] FILE.json")
		fmt.Fprintln(os.Stderr, "--url and --secret (or RELAY_URL and RELAY_SECRET) and FILE.json are required")
		return 2
	}
	body, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot read %s: %v\n", flag.Arg(0), err)
		return 2
	}
	if *printSignature {
		t := *timestamp
		if t == 0 {
			t = time.Now().Unix()
		}
		fmt.Println(relayclient.Sign(body, *secret, t))
		return 0
	}
	logLine := func(line string) { fmt.Fprintln(os.Stderr, line) }
	options := relayclient.Options{MaxWait: *maxWait, Log: logLine, Source: *source}
	status, answer, err := relayclient.SendWith(*url, *secret, body, options)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot reach %s: %v\n", *url, err)
		return 2
	}
	out, _ := json.Marshal(answer)
	fmt.Println(string(out))
	for _, line := range relayclient.Problems(answer) {
		fmt.Fprintln(os.Stderr, line)
	}
	switch {
	case status >= 200 && status < 300:
		return 0
	case status >= 400 && status < 500:
		return 1
	}
	return 2
}

func status(url, secret, eventID, source string, printSignature bool, timestamp int64) int {
	if printSignature {
		if timestamp == 0 {
			timestamp = time.Now().Unix()
		}
		fmt.Println(relayclient.SignStatus(eventID, secret, timestamp))
		return 0
	}
	code, answer, err := relayclient.EventStatusOf(url, secret, eventID, source)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot reach %s: %v\n", url, err)
		return 2
	}
	out, _ := json.Marshal(answer)
	fmt.Println(string(out))
	switch {
	case code == 200:
		return 0
	case code >= 400 && code < 500:
		fmt.Fprintf(os.Stderr, "%d: %v\n", code, answer["error"])
		return 1
	}
	return 2
}
