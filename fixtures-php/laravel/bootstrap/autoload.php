<?php

/**
 * Class loading without Composer: Debian's php-laravel-framework (its autoloader pulls in the
 * framework's dependencies), the askr package, and PSR-4 for this app. When vendor/autoload.php
 * exists (a Composer install), it is used instead, as in any Laravel app.
 */

declare(strict_types=1);

if (is_file(__DIR__ . '/../vendor/autoload.php')) {
    require __DIR__ . '/../vendor/autoload.php';
    return;
}

require '/usr/share/php/Illuminate/autoload.php';

// The askr package: vendor/askr/sidecar when linked there (what Composer's path repository
// does), else the copy in this repository (fixtures-php/laravel -> ../../php).
$askr = is_dir(__DIR__ . '/../vendor/askr/sidecar') ? __DIR__ . '/../vendor/askr/sidecar' : __DIR__ . '/../../../php';
require_once $askr . '/src/askr.php';

$prefixes = [
    'App\\' => __DIR__ . '/../app/',
    'Database\\Seeders\\' => __DIR__ . '/../database/seeders/',
    'Askr\\' => $askr . '/src/',
];
spl_autoload_register(static function (string $class) use ($prefixes): void {
    foreach ($prefixes as $prefix => $dir) {
        if (str_starts_with($class, $prefix)) {
            $file = $dir . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
            if (is_file($file)) {
                require $file;
            }
            return;
        }
    }
});
