<?php

/**
 * Appends "METHOD /path" to storage/logs/requests.log for every request PHP serves, so the tests
 * can count FPM requests (e.g. none for a stream reconnecting within its grant).
 */

declare(strict_types=1);

namespace App\Http\Middleware;

use Closure;
use Illuminate\Http\Request;

class CountRequests
{
    public function handle(Request $request, Closure $next): mixed
    {
        $line = $request->method() . ' /' . ltrim($request->path(), '/') . "\n";
        file_put_contents(storage_path('logs/requests.log'), $line, FILE_APPEND | LOCK_EX);
        return $next($request);
    }
}
