<?php
// bench:sse: the classic PHP SSE loop (docs/architecture.md, Design notes: What it is). It pins
// one FPM worker for as long as the client stays, up to ?seconds= (default 300) so a forgotten run
// ends by itself.
header('Content-Type: text/event-stream');
header('Cache-Control: no-cache');
header('X-Accel-Buffering: no');
while (ob_get_level() > 0) {
    ob_end_flush();
}
$deadline = time() + (int) ($_GET['seconds'] ?? 300);
$i = 0;
while (!connection_aborted() && time() < $deadline) {
    echo 'data: tick ' . $i++ . "\n\n";
    flush();
    sleep(1);
}
