<?php

/**
 * Channel rules, exactly as with Pusher or Reverb: the sidecar's events endpoint asks
 * /broadcasting/auth, and these decide. `guards` lets a session or a bearer token identify the user.
 */

declare(strict_types=1);

use App\Models\Order;
use Illuminate\Support\Facades\Broadcast;

$guards = ['guards' => ['web', 'api']];

// private-orders.{id}: only the order's owner.
Broadcast::channel('orders.{id}', fn ($user, $id) => $user->id === Order::find($id)?->user_id, $guards);

// presence-room.{id}: anyone signed in; what is returned is the member's user_info.
Broadcast::channel('room.{id}', fn ($user, $id) => ['id' => $user->id, 'name' => $user->name], $guards);

// private-team.{id}: anyone signed in (the Echo tests whisper on it).
Broadcast::channel('team.{id}', fn ($user, $id) => true, $guards);

// private-App.Models.User.{id}: Laravel's default per-user channel.
Broadcast::channel('App.Models.User.{id}', fn ($user, $id) => (int) $user->id === (int) $id, $guards);
