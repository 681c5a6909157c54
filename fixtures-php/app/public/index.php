<?php
// Front controller of the integration-test app: one route per behaviour the tests check.
// Never shipped as library code (fixtures-php/ is test and demo material only).
declare(strict_types=1);

require __DIR__ . '/../../../php/src/askr.php';

$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';

function json_out(array $data, int $status = 200): void {
    http_response_code($status);
    header('Content-Type: application/json');
    echo json_encode($data, JSON_UNESCAPED_SLASHES | JSON_PRETTY_PRINT);
}

switch (true) {
    case $path === '/dump' || str_starts_with($path, '/dump/'):
        $input = file_get_contents('php://input');
        $files = [];
        foreach ($_FILES as $field => $f) {
            $files[$field] = [
                'name' => $f['name'], 'size' => $f['size'], 'error' => $f['error'], 'type' => $f['type'],
                'sha256' => $f['error'] === 0 ? hash_file('sha256', $f['tmp_name']) : null,
            ];
        }
        json_out([
            'server' => $_SERVER, 'get' => $_GET, 'post' => $_POST, 'cookie' => $_COOKIE, 'files' => $files,
            'input_length' => strlen($input), 'input_sha256' => hash('sha256', $input),
        ]);
        break;
    case preg_match('#^/status/(\d{3})$#', $path, $m) === 1:
        http_response_code((int) $m[1]);
        echo "status {$m[1]}\n";
        break;
    case $path === '/status-header':
        header('Status: 418 I\'m a teapot');
        echo "teapot\n";
        break;
    case $path === '/redirect':
        header('Location: /dump?from=redirect');
        break;
    case $path === '/cookies':
        setcookie('a', '1');
        setcookie('b', '2', ['httponly' => true, 'path' => '/']);
        setcookie('c', 'three; not', ['samesite' => 'Lax']);
        echo "cookies set\n";
        break;
    case $path === '/slow':
        usleep((int) ($_GET['ms'] ?? 1000) * 1000);
        echo "slow done\n";
        break;
    case $path === '/big':
        $mib = (int) ($_GET['mib'] ?? 1);
        $chunk = str_repeat('0123456789abcdef', 4096); // 64 KiB
        for ($i = 0; $i < $mib * 16; $i++) {
            echo $chunk;
        }
        break;
    case $path === '/stderr':
        error_log('askr-test-stderr-marker ' . ($_GET['tag'] ?? ''));
        echo "logged\n";
        break;
    case $path === '/accel':
        header('X-Accel-Redirect: /protected/' . ($_GET['file'] ?? 'secret.txt'));
        header('Content-Disposition: attachment; filename="secret.txt"');
        echo "this body is replaced\n";
        break;
    case $path === '/sendfile':
        header('X-Sendfile: ' . ($_GET['path'] ?? ''));
        break;
    case $path === '/flush':
        header('X-Accel-Buffering: no');
        while (ob_get_level() > 0) {
            ob_end_flush();
        }
        $n = (int) ($_GET['n'] ?? 3);
        for ($i = 0; $i < $n; $i++) {
            echo "chunk $i\n";
            flush();
            usleep((int) ($_GET['ms'] ?? 200) * 1000);
        }
        break;
    case $path === '/finish':
        echo "finished early\n";
        fastcgi_finish_request();
        usleep((int) ($_GET['ms'] ?? 500) * 1000);
        break;
    case $path === '/headers':
        header('X-Custom: yes');
        header('X-Accel-Buffering: yes');
        header('X-Askr-Internal: secret');
        header('Connection: close');
        echo "headers\n";
        break;
    case $path === '/hold':
        // An SSE hold: PHP names the channels, writes the first frames and returns at once.
        askr_subscribe(explode(',', (string) ($_GET['channels'] ?? 'orders')));
        echo "event: init\ndata: " . json_encode(['user' => $_COOKIE['user'] ?? null]) . "\n\n";
        break;
    case $path === '/hold-bad':
        header('X-Askr-Subscribe: bad channel!');
        break;
    case $path === '/grip':
        header('Grip-Hold: stream');
        header('Grip-Channel: ' . ($_GET['channel'] ?? 'grip') . '; prev-id=1');
        header('Grip-Keep-Alive: :\n\n; format=cstring; timeout=20');
        echo ": grip stream open\n\n";
        break;
    case $path === '/publish':
        $ok = askr_publish(explode(',', (string) ($_GET['channel'] ?? 'orders')), (string) ($_GET['data'] ?? ''), $_GET['event'] ?? null);
        json_out(['ok' => $ok, 'error' => askr_last_error()], $ok ? 200 : 500);
        break;
    case $path === '/sse-loop':
        // Passthrough: a classic PHP SSE loop (pins this worker while it runs).
        header('Content-Type: text/event-stream');
        // php.ini's output_buffering (4096 in Debian's production ini) would hold small chunks.
        while (ob_get_level() > 0) {
            ob_end_flush();
        }
        $n = (int) ($_GET['n'] ?? 3);
        for ($i = 0; $i < $n; $i++) {
            echo "data: tick $i\n\n";
            flush();
            usleep((int) ($_GET['ms'] ?? 200) * 1000);
        }
        break;
    case $path === '/broadcasting/auth':
        // Laravel's shape: POST channel_name=…; private-user.{id} belongs to the user in the cookie.
        $channel = (string) ($_POST['channel_name'] ?? '');
        $user = $_COOKIE['user'] ?? null;
        if ($_SERVER['REQUEST_METHOD'] === 'POST' && $user !== null
            && preg_match('/^(private|presence)-user\.(\d+)$/', $channel, $m) === 1 && $m[2] === $user) {
            json_out(['auth' => 'ok', 'channel' => $channel, 'socket_id' => $_POST['socket_id'] ?? null]);
        } elseif ($_SERVER['REQUEST_METHOD'] === 'POST' && $user !== null && str_starts_with($channel, 'presence-room.')) {
            // Pusher/Laravel shape: channel_data is a JSON string naming the member.
            json_out(['channel_data' => json_encode(['user_id' => (int) $user, 'user_info' => ['name' => "user $user"]])]);
        } else {
            json_out(['error' => 'forbidden'], 403);
        }
        break;
    case $path === '/exit-code':
        http_response_code(500);
        exit(3);
    default:
        json_out(['route' => 'front-controller', 'path' => $path, 'script' => $_SERVER['SCRIPT_NAME']]);
}
