<?php

/**
 * A ShouldBroadcast event without broadcastAs(): the SSE event name is the class name,
 * `App\Events\OrderShipped` (Echo-style `listen('OrderShipped')`). Sent on private-orders.{id}.
 */

declare(strict_types=1);

namespace App\Events;

use App\Models\Order;
use Illuminate\Broadcasting\InteractsWithSockets;
use Illuminate\Broadcasting\PrivateChannel;
use Illuminate\Contracts\Broadcasting\ShouldBroadcast;
use Illuminate\Foundation\Events\Dispatchable;
use Illuminate\Queue\SerializesModels;

class OrderShipped implements ShouldBroadcast
{
    use Dispatchable;
    use InteractsWithSockets;
    use SerializesModels;

    /** @param string $via who broadcast it (controller, job, console), for the tests */
    public function __construct(public Order $order, public string $via)
    {
    }

    public function broadcastOn(): PrivateChannel
    {
        return new PrivateChannel('orders.' . $this->order->id);
    }

    /** @return array<string, mixed> */
    public function broadcastWith(): array
    {
        return ['id' => $this->order->id, 'status' => $this->order->status, 'via' => $this->via];
    }
}
