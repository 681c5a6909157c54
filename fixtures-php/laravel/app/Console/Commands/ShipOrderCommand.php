<?php

/** `php artisan orders:ship {id}`: broadcasts OrderShipped from a console command. */

declare(strict_types=1);

namespace App\Console\Commands;

use App\Events\OrderShipped;
use App\Models\Order;
use Illuminate\Console\Command;

class ShipOrderCommand extends Command
{
    protected $signature = 'orders:ship {id}';
    protected $description = 'Mark an order shipped and broadcast OrderShipped';

    public function handle(): int
    {
        $order = Order::findOrFail((int) $this->argument('id'));
        $order->update(['status' => 'shipped']);
        broadcast(new OrderShipped($order, 'console'));
        $this->info("order {$order->id} shipped");
        return 0;
    }
}
