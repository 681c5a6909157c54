<?php

/**
 * Laravel broadcaster for askr-sidecar: broadcast() publishes one datagram per event (protocol v1,
 * docs/protocol.md) through askr_publish(); auth() answers the sidecar's internal
 * POST /broadcasting/auth with Laravel's own channel rules (routes/channels.php, unchanged).
 * Invariants: the SSE `event:` is the Laravel event name (broadcastAs() or the class name) and
 * `data:` the JSON payload, without Laravel's `socket` key (toOthers()'s socket id travels in the
 * datagram header, and the sidecar leaves that stream out); presence auth answers always carry
 * channel_data {user_id, user_info}.
 */

declare(strict_types=1);

namespace Askr\Laravel;

use Illuminate\Broadcasting\BroadcastException;
use Illuminate\Broadcasting\Broadcasters\Broadcaster;
use Illuminate\Broadcasting\Broadcasters\UsePusherChannelConventions;
use Illuminate\Support\Arr;
use Psr\Log\LoggerInterface;
use Symfony\Component\HttpKernel\Exception\AccessDeniedHttpException;

final class AskrBroadcaster extends Broadcaster
{
    use UsePusherChannelConventions;

    /**
     * @param string|null $socket the sidecar's datagram socket; null uses ASKR_SOCKET, else
     *                            /run/askr/askr.sock (askr_publish()'s own lookup)
     * @param bool $throw a failed publish throws BroadcastException (Laravel's Pusher and Ably
     *                    broadcasters do the same); false logs a warning instead
     */
    public function __construct(
        private readonly ?string $socket = null,
        private readonly bool $throw = true,
        private readonly ?LoggerInterface $logger = null,
    ) {
    }

    /**
     * Builds the broadcaster from a `broadcasting.connections.*` entry:
     * `['driver' => 'askr', 'socket' => '/run/askr/askr.sock', 'throw' => true]`.
     *
     * @param array<string, mixed> $config
     */
    public static function fromConfig(array $config, ?LoggerInterface $logger = null): self
    {
        $socket = $config['socket'] ?? null;
        return new self(
            is_string($socket) && $socket !== '' ? $socket : null,
            (bool) ($config['throw'] ?? true),
            $logger,
        );
    }

    /**
     * Authorizes `channel_name` for the request's user with the registered channel rules.
     *
     * @param \Illuminate\Http\Request $request
     * @return mixed the body of validAuthenticationResponse()
     * @throws AccessDeniedHttpException (Laravel answers 403; the sidecar then refuses the stream)
     */
    public function auth($request)
    {
        $name = (string) $request->input('channel_name', '');
        $channel = $this->normalizeChannelName($name);
        if ($name === '' || ($this->isGuardedChannel($name) && !$this->retrieveUser($request, $channel))) {
            throw new AccessDeniedHttpException();
        }
        return $this->verifyUserCanAccessChannel($request, $channel);
    }

    /**
     * The 2xx body the sidecar reads. Private channels: `{"auth":true}`. Presence channels:
     * `{"channel_data":{"user_id":…,"user_info":…}}`, where user_info is what the channel rule
     * returned (null when it returned true), the member the sidecar announces to the channel.
     *
     * @param \Illuminate\Http\Request $request
     * @param mixed $result what the channel rule returned (truthy)
     * @return array<string, mixed>
     */
    public function validAuthenticationResponse($request, $result)
    {
        $name = (string) $request->input('channel_name', '');
        if (!str_starts_with($name, 'presence-')) {
            return ['auth' => true];
        }
        $user = $this->retrieveUser($request, $this->normalizeChannelName($name));
        if ($user === null) {
            throw new AccessDeniedHttpException();
        }
        $id = method_exists($user, 'getAuthIdentifierForBroadcasting')
            ? $user->getAuthIdentifierForBroadcasting()
            : $user->getAuthIdentifier();
        return ['channel_data' => [
            // The sidecar accepts a string or a number; anything else (a UUID object) as a string.
            'user_id' => is_int($id) || is_string($id) ? $id : (string) $id,
            'user_info' => is_bool($result) ? null : $result,
        ]];
    }

    /**
     * Publishes `$event` with the JSON of `$payload` to every channel (one datagram per 32
     * channels, the sidecar's limit per datagram).
     *
     * `socket` (set by `broadcast(...)->toOthers()` from the request's X-Socket-ID) is taken out
     * of the payload and sent as the datagram's `socket` field: the sidecar does not deliver the
     * event to the stream with that socket id, and no subscriber sees it in the data. A value
     * that is not a socket id (`<digits>.<digits>`: the header is the client's to forge) is
     * dropped, and the event goes to every stream, as without toOthers().
     *
     * @param array<int, mixed> $channels Channel objects or names
     * @param string $event
     * @param array<string, mixed> $payload
     * @throws BroadcastException when the publish fails and `throw` is on
     */
    public function broadcast(array $channels, $event, array $payload = [])
    {
        $names = array_values(array_unique($this->formatChannels($channels)));
        if ($names === []) {
            return;
        }
        $socketId = Arr::pull($payload, 'socket');
        $socketId = is_string($socketId) && askr_is_socket_id($socketId) ? $socketId : null;
        // An empty payload is still an object for listeners that read its fields.
        $json = $payload === []
            ? '{}'
            : json_encode($payload, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION);
        if ($json === false) {
            $this->fail("cannot encode the payload of $event as JSON: " . json_last_error_msg());
            return;
        }
        $perDatagram = askr_internal_limit('ASKR_MAX_CHANNELS', ASKR_MAX_CHANNELS);
        foreach (array_chunk($names, $perDatagram) as $chunk) {
            if (!$this->publish($chunk, $json, (string) $event, $socketId)) {
                $this->fail('cannot broadcast ' . $event . ' to ' . implode(', ', $chunk) . ': ' . askr_last_error());
                return;
            }
        }
    }

    /**
     * askr_publish() reads its socket from ASKR_SOCKET: point it at the configured socket for
     * this call only (putenv is per request under FPM; restored here for CLI workers too).
     *
     * @param list<string> $channels
     */
    private function publish(array $channels, string $json, string $event, ?string $socketId): bool
    {
        if ($this->socket === null || getenv('ASKR_SOCKET') === $this->socket) {
            return askr_publish($channels, $json, event: $event, socket: $socketId);
        }
        $previous = getenv('ASKR_SOCKET');
        putenv('ASKR_SOCKET=' . $this->socket);
        try {
            return askr_publish($channels, $json, event: $event, socket: $socketId);
        } finally {
            putenv($previous === false ? 'ASKR_SOCKET' : 'ASKR_SOCKET=' . $previous);
        }
    }

    private function fail(string $message): void
    {
        if ($this->throw) {
            throw new BroadcastException('askr: ' . $message);
        }
        $this->logger?->warning('askr: ' . $message);
    }
}
