<?php

/**
 * Registers the `askr` broadcast driver (Broadcast::extend) and a default
 * `broadcasting.connections.askr` entry, and lets `php artisan vendor:publish --tag=askr-js`
 * copy the browser client (php/js: askr-connector.js for Laravel Echo, its script build
 * askr-connector.iife.js, the standalone askr-echo.js and the modules they import) to
 * public/vendor/askr/. List it in config/app.php `providers` (or rely on package discovery when
 * installed with Composer).
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
            // The whole directory: the ES modules import each other by relative path.
            $this->publishes(
                [dirname(__DIR__, 2) . '/js' => $this->app->publicPath() . '/vendor/askr'],
                ['askr', 'askr-js'],
            );
        }
    }
}
