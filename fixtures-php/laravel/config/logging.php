<?php

/**
 * Laravel 8 on PHP 8.2 raises a few harmless deprecations (in its dependencies): they go to
 * storage/logs/deprecations.log, never to the response or the console.
 */

return [
    'default' => env('LOG_CHANNEL', 'single'),
    'deprecations' => env('LOG_DEPRECATIONS_CHANNEL', 'deprecations'),
    'channels' => [
        'single' => [
            'driver' => 'single',
            'path' => storage_path('logs/laravel.log'),
            'level' => 'debug',
        ],
        'deprecations' => [
            'driver' => 'single',
            'path' => storage_path('logs/deprecations.log'),
            'level' => 'debug',
        ],
        'stderr' => [
            'driver' => 'monolog',
            'handler' => Monolog\Handler\StreamHandler::class,
            'with' => ['stream' => 'php://stderr'],
        ],
        'null' => [
            'driver' => 'monolog',
            'handler' => Monolog\Handler\NullHandler::class,
        ],
    ],
];
