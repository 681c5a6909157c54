<?php

/**
 * Test users (password "secret"; api_token "<name>-token") and orders: order 1 is alice's,
 * order 2 is bob's.
 */

declare(strict_types=1);

namespace Database\Seeders;

use App\Models\Order;
use App\Models\User;
use Illuminate\Database\Seeder;
use Illuminate\Support\Facades\Hash;

class DatabaseSeeder extends Seeder
{
    public function run(): void
    {
        $password = Hash::make('secret');
        foreach (['alice', 'bob', 'carol'] as $name) {
            User::create([
                'name' => ucfirst($name),
                'email' => "$name@example.test",
                'password' => $password,
                'api_token' => "$name-token",
            ]);
        }
        Order::create(['user_id' => 1]);
        Order::create(['user_id' => 2]);
    }
}
