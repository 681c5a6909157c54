<?php
// bench:protect front controller (bench/protect.ts): both servers route every URL here, the way
// Laravel's index.php receives every route.
//   GET  /tiny    the probe: the cheapest answer, to see whether the pool still has a worker free
//   GET  /big     ?bytes=N (default 2 MiB) of output, for the slow readers
//   POST /upload  reads the whole body and says how long it was, for the slow uploaders
$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH);
switch ($path) {
    case '/tiny':
        header('Content-Type: text/plain');
        echo "ok\n";
        break;
    case '/big':
        // octet-stream: no server compresses it (nginx's gzip_types is text/html only anyway).
        header('Content-Type: application/octet-stream');
        $left = max(0, (int) ($_GET['bytes'] ?? 2097152));
        $chunk = str_repeat('x', 65536);
        while ($left > 0) {
            $n = min($left, 65536);
            echo $n === 65536 ? $chunk : substr($chunk, 0, $n);
            $left -= $n;
        }
        break;
    case '/upload':
        header('Content-Type: text/plain');
        echo 'received ' . strlen(file_get_contents('php://input')) . "\n";
        break;
    default:
        http_response_code(404);
        header('Content-Type: text/plain');
        echo "not found\n";
}
