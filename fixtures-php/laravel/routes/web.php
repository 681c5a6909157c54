<?php

/** Browser routes (session + CSRF): login, the dashboard page, and actions it calls with fetch. */

declare(strict_types=1);

use App\Http\Controllers\ChatController;
use App\Http\Controllers\LoginController;
use App\Http\Controllers\OrderController;
use App\Http\Controllers\ProbeController;
use App\Models\Order;
use Illuminate\Http\Request;
use Illuminate\Support\Facades\Route;

Route::get('/', fn () => redirect('/dashboard'));
Route::get('/login', [LoginController::class, 'show'])->name('login');
Route::post('/login', [LoginController::class, 'login']);
Route::post('/logout', [LoginController::class, 'logout']);

// The Echo test page for a token-guard app: no session, the token comes in the query
// (?token=alice-token; &via=headers passes it in auth.headers instead of bearerToken; &build=iife
// loads the script builds instead of the ES modules).
Route::get('/echo-token', fn (Request $request) => view('echo', [
    'config' => [
        'guard' => 'token',
        'token' => (string) $request->query('token', ''),
        'via' => $request->query('via') === 'headers' ? 'headers' : 'bearerToken',
        'api' => '/api',
    ],
    'build' => $request->query('build') === 'iife' ? 'iife' : 'esm',
]));

Route::middleware('auth')->group(function (): void {
    Route::get('/dashboard', fn () => view('dashboard', [
        'user' => auth()->user(),
        'orders' => Order::where('user_id', auth()->id())->orderBy('id')->get(),
    ]));
    Route::post('/orders/{order}/ship', [OrderController::class, 'ship']);
    Route::post('/orders/{order}/ship-later', [OrderController::class, 'shipLater']);
    Route::post('/chat', [ChatController::class, 'post']);
    // The Echo test page (session guard): laravel-echo with AskrConnector.
    Route::get('/echo', fn (Request $request) => view('echo', [
        'config' => ['guard' => 'session', 'token' => null, 'api' => ''],
        'build' => $request->query('build') === 'iife' ? 'iife' : 'esm',
    ]));
    Route::post('/probe', [ProbeController::class, 'probe']);
    Route::post('/notify', [ProbeController::class, 'notify']);
});
