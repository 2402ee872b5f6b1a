<?php
// S2S Relay client: sign a request body and POST it to the relay's ingest (PHP 8.1+, curl extension or
// streams; no packages).
//
//   require 'RelayClient.php';
//   [$status, $answer] = RelayClient::send($url, $secret, $body);
//   [$status, $journey] = RelayClient::eventStatus($url, $secret, 'order-1001');
//
// A 503 is sent again, freshly signed, after its Retry-After (at most MAX_ATTEMPTS sends).
declare(strict_types=1);

final class RelayClient
{
    public const HEADER = 'X-Relay-Signature';
    public const MAX_ATTEMPTS = 5;
    public const MAX_RETRY_AFTER_SECONDS = 30;

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
    public static function eventStatus(string $url, string $secret, string $eventId): array
    {
        $target = rtrim($url, '/') . substr(self::statusPath($eventId), strlen('/v1/events'));
        [$status, $answer] = self::request('GET', $target, self::HEADER . ': ' . self::signStatus($eventId, $secret), null);
        return [$status, $answer];
    }

    /**
     * POST $body, signed anew for every send. Returns [status, answer]; throws RuntimeException when the relay
     * cannot be reached.
     */
    public static function send(string $url, string $secret, string $body): array
    {
        for ($attempt = 1; ; $attempt++) {
            $headers = "Content-Type: application/json\r\n" . self::HEADER . ': ' . self::sign($body, $secret);
            [$status, $answer, $responseHeaders] = self::request('POST', $url, $headers, $body);
            if ($status !== 503 || $attempt >= self::MAX_ATTEMPTS) {
                return [$status, $answer];
            }
            $wait = 1;
            foreach ($responseHeaders as $line) {
                if (preg_match('/^Retry-After:\s*(\d+)\s*$/i', $line, $r)) {
                    $wait = (int) $r[1];
                }
            }
            sleep(min($wait, self::MAX_RETRY_AFTER_SECONDS));
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
            foreach ($a['invalid'] ?? [] as $vendor => $errors) {
                $lines[] = "invalid for $vendor: events[{$a['index']}] {$a['event_id']}: " . $fields($errors);
            }
        }
        return $lines;
    }
}
