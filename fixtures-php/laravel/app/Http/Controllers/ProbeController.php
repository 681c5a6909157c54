<?php

/**
 * What the Echo test page calls (session + CSRF under /, bearer token under /api): ProbeSent on
 * two channels, optionally toOthers() (the request's X-Socket-ID, which the answer echoes), and a
 * broadcast notification to the signed-in user.
 */

declare(strict_types=1);

namespace App\Http\Controllers;

use App\Events\ProbeSent;
use App\Notifications\ProbeNotification;
use Illuminate\Http\JsonResponse;
use Illuminate\Http\Request;
use Illuminate\Routing\Controller;

class ProbeController extends Controller
{
    public function probe(Request $request): JsonResponse
    {
        $pending = broadcast(new ProbeSent((string) $request->input('text', '')));
        if ($request->boolean('others')) {
            $pending->toOthers();
        }
        return response()->json(['sent' => true, 'socket' => $request->header('X-Socket-ID')]);
    }

    public function notify(Request $request): JsonResponse
    {
        $request->user()->notify(new ProbeNotification((string) $request->input('text', '')));
        return response()->json(['sent' => true]);
    }
}
