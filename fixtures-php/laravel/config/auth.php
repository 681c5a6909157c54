<?php

/**
 * Two guards: `web` (session, the browser) and `api` (a bearer token, see AuthServiceProvider),
 * so tests without a browser can authenticate the sidecar's channel authorization requests.
 */

return [
    'defaults' => ['guard' => 'web', 'passwords' => 'users'],
    'guards' => [
        'web' => ['driver' => 'session', 'provider' => 'users'],
        'api' => ['driver' => 'askr-token', 'provider' => 'users'],
    ],
    'providers' => [
        'users' => ['driver' => 'eloquent', 'model' => App\Models\User::class],
    ],
    'passwords' => [],
    'password_timeout' => 10800,
];
