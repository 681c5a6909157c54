<?php
// Worker-protection tests: a response that must stream. It sends a first chunk, then waits until
// the test creates the file ?gate= names (the client saw the first chunk) or 3 s pass, then sends
// "second: gate" or "second: timeout". ?sse=1 answers as an SSE script (for passthrough), else
// with X-Accel-Buffering: no.
declare(strict_types=1);

$sse = ($_GET['sse'] ?? '') === '1';
if ($sse) {
    header('Content-Type: text/event-stream');
} else {
    header('Content-Type: text/plain');
    header('X-Accel-Buffering: no');
}
// php.ini's output_buffering (4096 in Debian's production ini) would hold the first chunk.
while (ob_get_level() > 0) {
    ob_end_flush();
}
echo $sse ? "data: first\n\n" : "first\n";
flush();

$gate = (string) ($_GET['gate'] ?? '');
$until = microtime(true) + 3.0;
$seen = false;
while (!$seen && microtime(true) < $until) {
    usleep(10_000);
    clearstatcache();
    $seen = $gate !== '' && str_starts_with($gate, '/') && file_exists($gate);
}
$second = 'second: ' . ($seen ? 'gate' : 'timeout');
echo $sse ? "data: $second\n\n" : "$second\n";
