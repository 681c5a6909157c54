<?php

/**
 * A ShouldBroadcast event with broadcastAs(): the SSE event name is `message.posted` (Echo-style
 * `listen('.message.posted')`). Sent on the public `chat` channel; the controller broadcasts it
 * toOthers(), so the sender's page (its X-Socket-ID) does not get its own message.
 */

declare(strict_types=1);

namespace App\Events;

use Illuminate\Broadcasting\Channel;
use Illuminate\Broadcasting\InteractsWithSockets;
use Illuminate\Contracts\Broadcasting\ShouldBroadcast;
use Illuminate\Foundation\Events\Dispatchable;

class MessagePosted implements ShouldBroadcast
{
    use Dispatchable;
    use InteractsWithSockets;

    public function __construct(public string $user, public string $text)
    {
    }

    public function broadcastOn(): Channel
    {
        return new Channel('chat');
    }

    public function broadcastAs(): string
    {
        return 'message.posted';
    }
}
