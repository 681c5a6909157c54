<?php
// Front controller of test/grip-publish.test.ts (its sidecars run with server.index =
// grip-app.php): a GRIP origin. The test builds the instruction headers with @fanoutio/grip's
// GripInstruct and passes them as JSON in ?instruct=; this page sends the Grip-* ones, as an
// origin behind Pushpin would, and ?first= as the stream's first bytes. Test material only.
declare(strict_types=1);

$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';

if ($path === '/stream') {
    $headers = json_decode((string) ($_GET['instruct'] ?? '{}'), true);
    foreach (is_array($headers) ? $headers : [] as $name => $value) {
        if (is_string($name) && is_string($value) && stripos($name, 'grip-') === 0) {
            header("$name: $value");
        }
    }
    header('Content-Type: text/event-stream');
    echo (string) ($_GET['first'] ?? '');
    return;
}

http_response_code(404);
header('Content-Type: text/plain');
echo "not found\n";
