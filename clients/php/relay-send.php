<?php
// relay-send.php --url URL --secret SECRET FILE.json      (or RELAY_URL / RELAY_SECRET)
// relay-send.php --secret SECRET --timestamp T --print-signature FILE.json
// relay-send.php --url URL --secret SECRET --status EVENT_ID
// relay-send.php --source eu ...                          (or RELAY_SOURCE: sign as the source eu)
//
// FILE.json is an ingest body, {"events": [...]}, sent byte for byte as it is. Prints the relay's JSON answer,
// lists on stderr every event that was rejected or found invalid, and exits 0 on 2xx, 1 on 4xx, 2 when the
// relay cannot be reached or still answers 5xx after the retries. --status asks what became of one event
// (GET /v1/events/{event_id}) and prints its journey: exit 0 when the relay knows it, 1 when it does not (404)
// or refuses the request, 2 when it cannot be reached. --max-retry-wait caps the wait a 503's Retry-After asks
// (30 s); --retry-wait VALUE prints that wait for VALUE (at --timestamp, default now), sending nothing.
declare(strict_types=1);
require __DIR__ . '/RelayClient.php';

$url = getenv('RELAY_URL') ?: null;
$secret = getenv('RELAY_SECRET') ?: null;
$source = getenv('RELAY_SOURCE') ?: null;
$file = null;
$timestamp = null;
$printSignature = false;
$eventId = null;
$maxWait = (float) RelayClient::MAX_RETRY_AFTER_SECONDS;
$retryWait = null;
$args = array_slice($argv, 1);
if (in_array('-h', $args, true) || in_array('--help', $args, true)) {
    echo <<<'HELP'
usage: relay-send.php [options] FILE.json
       relay-send.php [options] --status EVENT_ID

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
HELP;
    echo "\n";
    exit(0);
}
for ($i = 0; $i < count($args); $i++) {
    switch ($args[$i]) {
        case '--url': $url = $args[++$i] ?? null; break;
        case '--secret': $secret = $args[++$i] ?? null; break;
        case '--source': $source = $args[++$i] ?? null; break;
        case '--timestamp': $timestamp = (int) ($args[++$i] ?? 0); break;
        case '--print-signature': $printSignature = true; break;
        case '--status': $eventId = $args[++$i] ?? null; break;
        case '--max-retry-wait': $maxWait = (float) ($args[++$i] ?? RelayClient::MAX_RETRY_AFTER_SECONDS); break;
        case '--retry-wait': $retryWait = $args[++$i] ?? ''; break;
        default:
            if (str_starts_with($args[$i], '-')) {
                fwrite(STDERR, "usage: relay-send.php --url URL --secret SECRET [--source NAME] FILE.json\nunknown option {$args[$i]}\n");
                exit(2);
            }
            $file = $args[$i];
    }
}
if ($retryWait !== null) {
    echo RelayClient::retryWait($retryWait, $timestamp !== null ? (float) $timestamp : null, $maxWait), "\n";
    exit(0);
}
if ($eventId !== null && $secret && ($url || $printSignature)) {
    if ($printSignature) {
        echo RelayClient::signStatus($eventId, $secret, $timestamp), "\n";
        exit(0);
    }
    try {
        [$status, $answer] = RelayClient::eventStatus($url, $secret, $eventId, $source);
    } catch (RuntimeException $e) {
        fwrite(STDERR, $e->getMessage() . "\n");
        exit(2);
    }
    echo json_encode($answer, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE), "\n";
    if ($status !== 200) {
        fwrite(STDERR, "$status: " . ($answer['error'] ?? '') . "\n");
    }
    exit($status === 200 ? 0 : ($status >= 400 && $status < 500 ? 1 : 2));
}
if ($file === null || !$secret || (!$url && !$printSignature)) {
    fwrite(STDERR, "usage: relay-send.php --url URL --secret SECRET [--source NAME] FILE.json\n");
    fwrite(STDERR, "--url and --secret (or RELAY_URL and RELAY_SECRET) and FILE.json are required\n");
    exit(2);
}
$body = @file_get_contents($file);
if ($body === false) {
    fwrite(STDERR, "cannot read $file\n");
    exit(2);
}
if ($printSignature) {
    echo RelayClient::sign($body, $secret, $timestamp), "\n";
    exit(0);
}
try {
    $log = static fn (string $line) => fwrite(STDERR, $line . "\n");
    [$status, $answer] = RelayClient::send($url, $secret, $body, $maxWait, $log, $source);
} catch (RuntimeException $e) {
    fwrite(STDERR, $e->getMessage() . "\n");
    exit(2);
}
echo json_encode($answer, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE), "\n";
foreach (RelayClient::problems($answer) as $line) {
    fwrite(STDERR, $line . "\n");
}
exit($status >= 200 && $status < 300 ? 0 : ($status >= 400 && $status < 500 ? 1 : 2));
