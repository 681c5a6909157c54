<?php

/** Posts a chat message: broadcast toOthers(), so the sender's own page (X-Socket-ID) skips it. */

declare(strict_types=1);

namespace App\Http\Controllers;

use App\Events\MessagePosted;
use Illuminate\Http\JsonResponse;
use Illuminate\Http\Request;
use Illuminate\Routing\Controller;

class ChatController extends Controller
{
    public function post(Request $request): JsonResponse
    {
        $text = (string) $request->input('text', '');
        broadcast(new MessagePosted($request->user()->name, $text))->toOthers();
        return response()->json(['sent' => true]);
    }
}
