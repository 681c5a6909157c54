<?php
// Runs under the test php-fpm: holds the response on two channels (askr_subscribe) and publishes
// once, with the socket path taken from the FastCGI param ASKR_SOCKET ($_SERVER), not getenv().
declare(strict_types=1);
require __DIR__ . '/../../php/src/askr.php';

askr_subscribe(['orders', 'audit', 'orders']);
$ok = askr_publish('orders', "from fpm\nline 2", 'fpm');
echo json_encode(['ok' => $ok, 'error' => askr_last_error()]);
