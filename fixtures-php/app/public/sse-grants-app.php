<?php
// Front controller of test/sse-grants.test.ts and test/sse-whisper.test.ts (their sidecars run
// with server.index = sse-grants-app.php): Laravel's /broadcasting/auth shape for a session
// guard (cookie user=ID) and a token guard (Authorization: Bearer token-ID), counting every
// request it serves, so a test can prove that a reconnect asked PHP nothing. Test material only.
declare(strict_types=1);

$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';

/** The request counter a test names with the cookie counter=HEX (one byte per request). */
function counter_file(string $id): ?string {
    return preg_match('/^[a-f0-9]{8,32}$/', $id) === 1 ? sys_get_temp_dir() . "/askr-grants-count-$id" : null;
}

$counter = counter_file((string) ($_COOKIE['counter'] ?? ''));
if ($counter !== null && $path !== '/count') {
    file_put_contents($counter, '.', FILE_APPEND | LOCK_EX);
}

function json_out(array $data, int $status = 200): void {
    http_response_code($status);
    header('Content-Type: application/json');
    echo json_encode($data, JSON_UNESCAPED_SLASHES);
}

/** The user: the session cookie, or a bearer token "token-ID" (a Sanctum-like token guard). */
function current_user(): ?string {
    $auth = $_SERVER['HTTP_AUTHORIZATION'] ?? '';
    if (preg_match('/^Bearer token-(\d+)$/', $auth, $m) === 1) {
        return $m[1];
    }
    $user = $_COOKIE['user'] ?? null;
    return is_string($user) && preg_match('/^\d+$/', $user) === 1 ? $user : null;
}

switch ($path) {
    case '/broadcasting/auth':
        $channel = (string) ($_POST['channel_name'] ?? '');
        $user = current_user();
        if ($_SERVER['REQUEST_METHOD'] !== 'POST' || $user === null) {
            json_out(['error' => 'unauthenticated'], 403);
        } elseif (preg_match('/^private-user\.(\d+)$/', $channel, $m) === 1) {
            $m[1] === $user ? json_out(['auth' => 'ok']) : json_out(['error' => 'forbidden'], 403);
        } elseif (str_starts_with($channel, 'private-chat.')) {
            json_out(['auth' => 'ok', 'socket_id' => $_POST['socket_id'] ?? null]);
        } elseif (str_starts_with($channel, 'presence-room.')) {
            json_out(['channel_data' => json_encode(['user_id' => (int) $user, 'user_info' => ['name' => "user $user"]])]);
        } elseif (str_starts_with($channel, 'presence-broken.')) {
            json_out(['auth' => 'ok']); // no channel_data: the sidecar cannot name the member
        } else {
            json_out(['error' => 'forbidden'], 403);
        }
        break;
    case '/count':
        $file = counter_file((string) ($_GET['id'] ?? ''));
        clearstatcache();
        json_out(['count' => $file !== null && is_file($file) ? filesize($file) : 0]);
        break;
    default:
        http_response_code(404);
        echo "no route $path\n";
}
