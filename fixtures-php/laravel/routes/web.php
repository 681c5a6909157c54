<?php

/** Browser routes (session + CSRF): login, the dashboard page, and actions it calls with fetch. */

declare(strict_types=1);

use App\Http\Controllers\ChatController;
use App\Http\Controllers\LoginController;
use App\Http\Controllers\OrderController;
use App\Models\Order;
use Illuminate\Support\Facades\Route;

Route::get('/', fn () => redirect('/dashboard'));
Route::get('/login', [LoginController::class, 'show'])->name('login');
Route::post('/login', [LoginController::class, 'login']);
Route::post('/logout', [LoginController::class, 'logout']);

Route::middleware('auth')->group(function (): void {
    Route::get('/dashboard', fn () => view('dashboard', [
        'user' => auth()->user(),
        'orders' => Order::where('user_id', auth()->id())->orderBy('id')->get(),
    ]));
    Route::post('/orders/{order}/ship', [OrderController::class, 'ship']);
    Route::post('/orders/{order}/ship-later', [OrderController::class, 'shipLater']);
    Route::post('/chat', [ChatController::class, 'post']);
});
