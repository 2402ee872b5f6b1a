<?php
// S2S Relay client: sign a request body and POST it to the relay's ingest (PHP 8.1+, curl extension or
// streams; no packages).
//
//   require 'RelayClient.php';
//   [$status, $answer] = RelayClient::send($url, $secret, $body);
//   [$status, $journey] = RelayClient::eventStatus($url, $secret, 'order-1001');
//
// A 503 is sent again, freshly signed, after its Retry-After (at most MAX_ATTEMPTS sends): delay-seconds or an
// HTTP-date (RFC 9110), 1 s when missing or malformed, at most MAX_RETRY_AFTER_SECONDS (retryWait).
declare(strict_types=1);

final class RelayClient
{
    public const HEADER = 'X-Relay-Signature';
    public const SOURCE_HEADER = 'X-Relay-Source'; // the source that signs, when it is not `default`
    public const MAX_ATTEMPTS = 5;
    public const MAX_RETRY_AFTER_SECONDS = 30;
    public const DEFAULT_RETRY_SECONDS = 1; // a 503 without a usable Retry-After
    private const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
    // RFC 9110 5.6.7: IMF-fixdate, then the obsolete RFC 850 and asctime forms
    private const HTTP_DATES = [
        '/^[A-Z][a-z]{2}, ([0-9]{2}) ([A-Z][a-z]{2}) ([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT$/D',
        '/^[A-Z][a-z]+, ([0-9]{2})-([A-Z][a-z]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT$/D',
        '/^[A-Z][a-z]{2} ([A-Z][a-z]{2}) ([ 0-9][0-9]) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([0-9]{4})$/D',
    ];

    /**
     * Unix seconds of an HTTP-date, or null. A two-digit year more than 50 years ahead of $now is the most recent
     * past year with those digits (RFC 9110 5.6.7).
     */
    public static function httpDate(string $text, float $now): ?int
    {
        foreach (self::HTTP_DATES as $index => $pattern) {
            if (!preg_match($pattern, $text, $m)) {
                continue;
            }
            [$day, $month, $year, $hh, $mm, $ss] = $index === 2
                ? [$m[2], $m[1], $m[6], $m[3], $m[4], $m[5]]
                : [$m[1], $m[2], $m[3], $m[4], $m[5], $m[6]];
            $monthIndex = array_search($month, self::MONTHS, true);
            if ($monthIndex === false) {
                return null;
            }
            $y = (int) $year;
            if ($index === 1) {
                $thisYear = (int) gmdate('Y', (int) $now);
                $y += intdiv($thisYear, 100) * 100;
                if ($y > $thisYear + 50) {
                    $y -= 100;
                }
            }
            [$d, $h, $mi, $s] = [(int) trim($day), (int) $hh, (int) $mm, (int) $ss];
            if ($d < 1 || $d > 31 || $h > 23 || $mi > 59 || $s > 60) {
                return null;
            }
            return gmmktime($h, $mi, $s, $monthIndex + 1, $d, $y);
        }
        return null;
    }

    /** Seconds to wait before resending a 503 answered with "Retry-After: $value" (null: no such header). */
    public static function retryWait(?string $value, ?float $now = null, float $cap = self::MAX_RETRY_AFTER_SECONDS): float
    {
        $text = trim($value ?? '', " \t");
        $now ??= microtime(true);
        if (preg_match('/^[0-9]+$/D', $text)) {
            $digits = ltrim($text, '0') ?: '0'; // leading zeros allowed; more than 9 digits is the cap
            $wait = strlen($digits) <= 9 ? (float) $digits : $cap;
        } elseif (($at = self::httpDate($text, $now)) !== null) {
            $wait = max(0.0, $at - $now);
        } else {
            $wait = (float) self::DEFAULT_RETRY_SECONDS;
        }
        return min($wait, $cap);
    }

    /** t=<unix seconds>,v1=<lower-case hex HMAC-SHA256 of "<t>.<body>">, keyed with the secret's UTF-8 bytes. */
    public static function sign(string $body, string $secret, ?int $timestamp = null): string
    {
        $t = $timestamp ?? time();
        return sprintf('t=%d,v1=%s', $t, hash_hmac('sha256', $t . '.' . $body, $secret));
    }

    /** "/v1/events/" and the event_id percent-encoded: every UTF-8 byte but A-Z a-z 0-9 - . _ ~ as %XX. */
    public static function statusPath(string $eventId): string
    {
        return '/v1/events/' . rawurlencode($eventId);
    }

    /** The X-Relay-Signature of GET /v1/events/{event_id}: the HMAC of "<t>.GET <statusPath>". */
    public static function signStatus(string $eventId, string $secret, ?int $timestamp = null): string
    {
        return self::sign('GET ' . self::statusPath($eventId), $secret, $timestamp);
    }

    /**
     * GET what became of $eventId; $url is the ingest URL (ending in /v1/events). Returns [status, answer]: 200
     * with the journey, 404 for an id the relay does not know; throws RuntimeException when unreachable.
     */
    public static function eventStatus(string $url, string $secret, string $eventId, ?string $source = null): array
    {
        $target = rtrim($url, '/') . substr(self::statusPath($eventId), strlen('/v1/events'));
        $headers = self::HEADER . ': ' . self::signStatus($eventId, $secret) . self::sourceHeader($source);
        [$status, $answer] = self::request('GET', $target, $headers, null);
        return [$status, $answer];
    }

    /** The X-Relay-Source header line (after a CRLF) of a source other than `default`; '' for the default one. */
    private static function sourceHeader(?string $source): string
    {
        return $source === null || $source === '' ? '' : "\r\n" . self::SOURCE_HEADER . ': ' . $source;
    }

    /**
     * POST $body, signed anew for every send. Returns [status, answer]; throws RuntimeException when the relay
     * cannot be reached.
     */
    public static function send(
        string $url,
        string $secret,
        string $body,
        float $maxWait = self::MAX_RETRY_AFTER_SECONDS,
        ?callable $log = null,
        ?string $source = null,
    ): array {
        for ($attempt = 1; ; $attempt++) {
            $headers = "Content-Type: application/json\r\n" . self::HEADER . ': ' . self::sign($body, $secret)
                . self::sourceHeader($source);
            [$status, $answer, $responseHeaders] = self::request('POST', $url, $headers, $body);
            if ($status !== 503 || $attempt >= self::MAX_ATTEMPTS) {
                return [$status, $answer];
            }
            $value = null;
            foreach ($responseHeaders as $line) {
                if (preg_match('/^Retry-After:(.*)$/i', rtrim($line, "\r\n"), $r)) {
                    $value = $r[1];
                }
            }
            $wait = self::retryWait($value, null, $maxWait);
            if ($log !== null) {
                $log(sprintf('503: sending again in %s s (Retry-After: %s)', $wait, $value === null ? 'none' : trim($value)));
            }
            usleep((int) round($wait * 1e6));
        }
    }

    /** One HTTP request: [status, JSON answer, response header lines]; RuntimeException when unreachable. */
    private static function request(string $method, string $url, string $headers, ?string $body): array
    {
        $http = ['method' => $method, 'header' => $headers . "\r\n", 'ignore_errors' => true, 'timeout' => 30];
        if ($body !== null) {
            $http['content'] = $body;
        }
        $raw = @file_get_contents($url, false, stream_context_create(['http' => $http]));
        if ($raw === false || !isset($http_response_header[0])) {
            throw new RuntimeException("cannot reach $url");
        }
        preg_match('#^HTTP/\S+\s+(\d{3})#', $http_response_header[0], $m);
        $answer = json_decode($raw, true);
        return [(int) $m[1], is_array($answer) ? $answer : ['error' => $raw], $http_response_header];
    }

    /** One line per event the relay rejected, and per vendor that found an accepted event invalid. */
    public static function problems(array $answer): array
    {
        $fields = fn (array $errors): string => implode('; ', array_map(
            fn (array $e): string => "{$e['field']}: {$e['message']}",
            $errors
        ));
        $lines = [];
        foreach ($answer['rejected'] ?? [] as $r) {
            $lines[] = "rejected events[{$r['index']}] {$r['event_id']}: " . $fields($r['errors'] ?? []);
        }
        foreach ($answer['accepted'] ?? [] as $a) {
            $invalid = $a['invalid'] ?? [];
            ksort($invalid, SORT_STRING); // by name, as every client lists them
            foreach ($invalid as $vendor => $errors) {
                $lines[] = "invalid for $vendor: events[{$a['index']}] {$a['event_id']}: " . $fields($errors);
            }
        }
        return $lines;
    }
}
