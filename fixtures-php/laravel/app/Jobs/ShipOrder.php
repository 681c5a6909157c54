<?php

/**
 * A queued job (database queue: `php artisan queue:work`) that ships an order and broadcasts
 * OrderShipped from the worker process.
 */

declare(strict_types=1);

namespace App\Jobs;

use App\Events\OrderShipped;
use App\Models\Order;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;

class ShipOrder implements ShouldQueue
{
    use Dispatchable;
    use InteractsWithQueue;
    use Queueable;

    public function __construct(public int $orderId)
    {
        $this->onConnection('database');
    }

    public function handle(): void
    {
        $order = Order::findOrFail($this->orderId);
        $order->update(['status' => 'shipped']);
        broadcast(new OrderShipped($order, 'job'));
    }
}
