<?php

/**
 * A broadcast notification: `$user->notify(...)` sends it on `private-App.Models.User.{id}` as
 * `Illuminate\Notifications\Events\BroadcastNotificationCreated` (Echo's `notification()`).
 */

declare(strict_types=1);

namespace App\Notifications;

use Illuminate\Notifications\Messages\BroadcastMessage;
use Illuminate\Notifications\Notification;

class ProbeNotification extends Notification
{
    public function __construct(public string $text)
    {
    }

    /** @return list<string> */
    public function via(mixed $notifiable): array
    {
        return ['broadcast'];
    }

    public function toBroadcast(mixed $notifiable): BroadcastMessage
    {
        return new BroadcastMessage(['text' => $this->text]);
    }
}
