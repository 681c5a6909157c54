<?php

/**
 * A ShouldBroadcast event on TWO channels, the public `probe` and the private `orders.1`: a page
 * subscribed to both gets it on each (Echo's `listen('ProbeSent')` on either channel). No
 * broadcastAs(): its name is the class name, `App\Events\ProbeSent`. The Echo tests send it.
 */

declare(strict_types=1);

namespace App\Events;

use Illuminate\Broadcasting\Channel;
use Illuminate\Broadcasting\InteractsWithSockets;
use Illuminate\Broadcasting\PrivateChannel;
use Illuminate\Contracts\Broadcasting\ShouldBroadcast;
use Illuminate\Foundation\Events\Dispatchable;

class ProbeSent implements ShouldBroadcast
{
    use Dispatchable;
    use InteractsWithSockets;

    public function __construct(public string $text)
    {
    }

    /** @return list<Channel> */
    public function broadcastOn(): array
    {
        return [new Channel('probe'), new PrivateChannel('orders.1')];
    }
}
