<?php

/** The same actions for clients with a bearer token (the `api` guard), no session or CSRF. */

declare(strict_types=1);

use App\Http\Controllers\ChatController;
use App\Http\Controllers\OrderController;
use App\Http\Controllers\ProbeController;
use Illuminate\Support\Facades\Route;

Route::middleware('auth:api')->group(function (): void {
    Route::post('/orders/{order}/ship', [OrderController::class, 'ship']);
    Route::post('/orders/{order}/ship-later', [OrderController::class, 'shipLater']);
    Route::post('/chat', [ChatController::class, 'post']);
    Route::post('/probe', [ProbeController::class, 'probe']);
    Route::post('/notify', [ProbeController::class, 'notify']);
});
