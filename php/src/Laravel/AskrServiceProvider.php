<?php

/**
 * Registers the `askr` broadcast driver (Broadcast::extend) and a default
 * `broadcasting.connections.askr` entry, and lets `php artisan vendor:publish --tag=askr-js`
 * copy the browser helper to public/vendor/askr/askr-echo.js. List it in config/app.php
 * `providers` (or rely on package discovery when installed with Composer).
 */

declare(strict_types=1);

namespace Askr\Laravel;

use Illuminate\Broadcasting\BroadcastManager;
use Illuminate\Contracts\Foundation\Application;
use Illuminate\Support\ServiceProvider;
use Psr\Log\LoggerInterface;

final class AskrServiceProvider extends ServiceProvider
{
    public function register(): void
    {
        $config = $this->app->make('config');
        if (!$config->has('broadcasting.connections.askr')) {
            $socket = getenv('ASKR_SOCKET');
            $config->set('broadcasting.connections.askr', [
                'driver' => 'askr',
                'socket' => is_string($socket) && $socket !== '' ? $socket : null,
            ]);
        }
    }

    public function boot(): void
    {
        $this->callAfterResolving(BroadcastManager::class, static function (BroadcastManager $manager): void {
            $manager->extend('askr', static function (Application $app, array $config): AskrBroadcaster {
                return AskrBroadcaster::fromConfig($config, $app->make(LoggerInterface::class));
            });
        });
        if ($this->app->runningInConsole()) {
            $this->publishes(
                [dirname(__DIR__, 2) . '/js/askr-echo.js' => $this->app->publicPath() . '/vendor/askr/askr-echo.js'],
                ['askr', 'askr-js'],
            );
        }
    }
}
