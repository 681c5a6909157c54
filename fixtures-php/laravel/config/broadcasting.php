<?php

/** BROADCAST_DRIVER=askr sends every ShouldBroadcast event to the askr-sidecar. */

return [
    'default' => env('BROADCAST_DRIVER', 'askr'),

    'connections' => [
        'askr' => [
            'driver' => 'askr',
            // The sidecar's broadcast.socket; null falls back to ASKR_SOCKET, then /run/askr/askr.sock.
            'socket' => env('ASKR_SOCKET'),
            // A failed publish (sidecar down) throws BroadcastException; false only logs it.
            'throw' => env('ASKR_THROW', true),
        ],
        'log' => ['driver' => 'log'],
        'null' => ['driver' => 'null'],
    ],
];
