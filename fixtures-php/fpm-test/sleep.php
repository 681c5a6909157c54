<?php
// Used by test/managed-fpm.test.ts: a request that runs ?s=N seconds (default 30) across a stop().
// A signal cuts sleep() short (FPM's graceful SIGQUIT does), so keep sleeping until the deadline.
echo 'sleeping ';
flush();
$until = microtime(true) + (float) ($_GET['s'] ?? 30);
while (microtime(true) < $until) {
    usleep(50000);
}
echo 'done';
