<?php

/** Closure commands: `php artisan chat:say {text}` broadcasts MessagePosted from the console. */

declare(strict_types=1);

use App\Events\MessagePosted;
use Illuminate\Support\Facades\Artisan;

Artisan::command('chat:say {text}', function (string $text): void {
    broadcast(new MessagePosted('console', $text));
    $this->info('sent');
})->purpose('Broadcast a chat message from the console');
