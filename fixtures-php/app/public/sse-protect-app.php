<?php
// Front controller of test/sse-protection.test.ts (its sidecar runs with
// server.index = sse-protect-app.php): a channel-auth route that sleeps, so that many connects are
// inside their authorization at the same moment, and a hold. Test material only.
declare(strict_types=1);

require __DIR__ . '/../../../php/src/askr.php';

$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';

switch ($path) {
    case '/broadcasting/auth':
        // Allows every private channel, slowly (Laravel's auth route, waiting on its database).
        usleep(200_000);
        header('Content-Type: application/json');
        echo json_encode(['auth' => 'ok', 'channel' => $_POST['channel_name'] ?? null]);
        break;
    case '/hold':
        askr_subscribe(explode(',', (string) ($_GET['channels'] ?? 'protect')));
        echo ": held\n\n";
        break;
    default:
        http_response_code(404);
        echo "no route $path\n";
}
