<?php
// Publishes one update with Symfony's Mercure component (Debian's php-symfony-mercure 0.6: Hub,
// Update, StaticTokenProvider, over Symfony HttpClient), as a Symfony app would:
//   php publish.php <hubUrl> <jwt> '<json: {"topics": [...], "data"?, "private"?, "id"?, "type"?, "retry"?}>'
// Prints the id the hub answered on stdout. On failure exits 1 and prints, on stderr, one line per
// exception of the chain: "<class>: <message>" (Hub wraps HttpClient's exception in its own).
declare(strict_types=1);

use Symfony\Component\Mercure\Hub;
use Symfony\Component\Mercure\Jwt\StaticTokenProvider;
use Symfony\Component\Mercure\Update;

const AUTOLOAD = '/usr/share/php/Symfony/Component/Mercure/autoload.php';
if (!is_file(AUTOLOAD)) {
    fwrite(STDERR, "missing " . AUTOLOAD . ': run "node scripts/ensure-system.mjs test" (Debian package php-symfony-mercure)' . "\n");
    exit(2);
}
require AUTOLOAD;

if ($argc !== 4) {
    fwrite(STDERR, "usage: php publish.php <hubUrl> <jwt> <json update>\n");
    exit(2);
}
[, $hubUrl, $jwt, $json] = $argv;
$u = json_decode($json, true, 16, JSON_THROW_ON_ERROR);

$update = new Update(
    $u['topics'],
    $u['data'] ?? '',
    $u['private'] ?? false,
    $u['id'] ?? null,
    $u['type'] ?? null,
    $u['retry'] ?? null,
);

try {
    echo (new Hub($hubUrl, new StaticTokenProvider($jwt)))->publish($update);
} catch (Throwable $e) {
    for (; $e !== null; $e = $e->getPrevious()) {
        fwrite(STDERR, get_class($e) . ': ' . $e->getMessage() . "\n");
    }
    exit(1);
}
