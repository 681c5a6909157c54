<?php

/** Ships an order now (broadcast from the request) or later (ShipOrder on the database queue). */

declare(strict_types=1);

namespace App\Http\Controllers;

use App\Events\OrderShipped;
use App\Jobs\ShipOrder;
use App\Models\Order;
use Illuminate\Http\JsonResponse;
use Illuminate\Http\Request;
use Illuminate\Routing\Controller;

class OrderController extends Controller
{
    public function ship(Request $request, Order $order): JsonResponse
    {
        abort_unless($request->user()?->id === $order->user_id, 403);
        $order->update(['status' => 'shipped']);
        broadcast(new OrderShipped($order, 'controller'));
        return response()->json(['id' => $order->id, 'status' => $order->status]);
    }

    public function shipLater(Request $request, Order $order): JsonResponse
    {
        abort_unless($request->user()?->id === $order->user_id, 403);
        ShipOrder::dispatch($order->id);
        return response()->json(['id' => $order->id, 'queued' => true], 202);
    }
}
