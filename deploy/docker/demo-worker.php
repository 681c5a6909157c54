<?php
// The compose demo's stand-in for `php artisan queue:work`: a long-running PHP CLI process in a
// container with no sidecar, publishing to the demo page's channel every DEMO_WORKER_INTERVAL
// seconds (default 30) with askr_publish(), exactly as a queued job's broadcast() would. The
// datagram goes to the relay beside it (ASKR_SOCKET), the relay forwards it to Redis, and every
// web sidecar delivers it to the open pages. Invariant: a failed publish is logged, never fatal
// (the relay may still be starting, or restarting).
declare(strict_types=1);

require '/var/www/html/php/src/askr.php';

$interval = max(1, (int) (getenv('DEMO_WORKER_INTERVAL') ?: 30));
$host = gethostname() ?: 'worker';
$count = 0;

fwrite(STDERR, "demo worker: publishing to channel demo every {$interval}s through " . getenv('ASKR_SOCKET') . "\n");
// No pcntl in the official php images: compose runs this under an init (`init: true`), which
// ends it on SIGTERM.
while (true) {
    $count++;
    $payload = json_encode([
        'name' => 'worker',
        'text' => "#{$count} from {$host}: a PHP CLI process with no sidecar, relayed through Redis",
        'time' => gmdate('Y-m-d\TH:i:s\Z'),
        'pid' => getmypid(),
    ], JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
    if (!askr_publish('demo', $payload, 'chat')) {
        fwrite(STDERR, 'demo worker: publish failed: ' . askr_last_error() . "\n");
    }
    sleep($interval);
}
