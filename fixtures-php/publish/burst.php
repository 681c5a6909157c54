<?php
// One publisher of the burst test: publishes COUNT numbered messages "PUBLISHER:N" to the
// channel "burst" as fast as the socket takes them. Exit 1 (with askr_last_error) on any failure.
declare(strict_types=1);
require __DIR__ . '/../../php/src/askr.php';

$publisher = (int) ($argv[1] ?? 0);
$count = (int) ($argv[2] ?? 0);
for ($n = 0; $n < $count; $n++) {
    if (!askr_publish('burst', "$publisher:$n", 'burst')) {
        fwrite(STDERR, "publisher $publisher, message $n: " . askr_last_error() . "\n");
        exit(1);
    }
}
