<?php

/**
 * The `askr-token` guard driver (Auth::viaRequest): `Authorization: Bearer <users.api_token>`.
 * Tests without a browser use it; the sidecar forwards Authorization to /broadcasting/auth.
 */

declare(strict_types=1);

namespace App\Providers;

use App\Models\User;
use Illuminate\Foundation\Support\Providers\AuthServiceProvider as ServiceProvider;
use Illuminate\Http\Request;
use Illuminate\Support\Facades\Auth;

class AuthServiceProvider extends ServiceProvider
{
    public function boot(): void
    {
        Auth::viaRequest('askr-token', static function (Request $request): ?User {
            $token = $request->bearerToken();
            return $token === null || $token === '' ? null : User::where('api_token', $token)->first();
        });
    }
}
