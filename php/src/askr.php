<?php

/**
 * askr-sidecar's PHP shim: publish events to the sidecar over its Unix datagram socket
 * (protocol v1, docs/protocol.md) and ask it to hold the current response as an SSE stream.
 * Plain PHP 8.1+, no extension. Invariants: the publish functions never throw and never emit a
 * warning (they return false and askr_last_error() says why); the datagram they build is
 * byte-for-byte the one the sidecar's encodeDatagram() builds (test/vectors/datagram-v1.json);
 * a publisher's socket id (toOthers) goes in the header's `socket` key, never in the payload.
 */

declare(strict_types=1);

if (!defined('ASKR_MAX_DATAGRAM')) {
    // 64 KiB less 2: the sidecar reads datagrams into a 65535-byte buffer, so a 65535-byte read
    // may be a truncated larger one and is rejected. Override with the ASKR_MAX_DATAGRAM env var.
    define('ASKR_MAX_DATAGRAM', 65534);
}
if (!defined('ASKR_MAX_CHANNEL_NAME_LENGTH')) {
    define('ASKR_MAX_CHANNEL_NAME_LENGTH', 128);
}
if (!defined('ASKR_MAX_CHANNELS')) {
    define('ASKR_MAX_CHANNELS', 32);
}
if (!defined('ASKR_MAX_ID_BYTES')) {
    define('ASKR_MAX_ID_BYTES', 256);
}
if (!defined('ASKR_DEFAULT_SOCKET')) {
    define('ASKR_DEFAULT_SOCKET', '/run/askr/askr.sock');
}
if (!defined('ASKR_SEND_TIMEOUT_SECONDS')) {
    // Linux queues only net.unix.max_dgram_qlen (10) datagrams: a blocking send is the
    // backpressure, bounded so a stuck sidecar cannot hang a PHP request for long.
    define('ASKR_SEND_TIMEOUT_SECONDS', 1);
}

if (!function_exists('askr_last_error')) {
    /** Why the last askr_* call failed, or null when it succeeded. */
    function askr_last_error(): ?string
    {
        return askr_internal_error();
    }
}

if (!function_exists('askr_internal_error')) {
    /** @internal Reads, or with $set = true replaces, the last error. */
    function askr_internal_error(bool $set = false, ?string $message = null): ?string
    {
        static $last = null;
        if ($set) {
            $last = $message;
        }
        return $last;
    }
}

if (!function_exists('askr_internal_limit')) {
    /** @internal A limit from the environment (positive integer), else the constant. */
    function askr_internal_limit(string $name, int $default): int
    {
        $value = getenv($name);
        if ($value === false && isset($_SERVER[$name]) && is_string($_SERVER[$name])) {
            $value = $_SERVER[$name];
        }
        if (is_string($value) && ctype_digit($value) && (int) $value > 0) {
            return (int) $value;
        }
        return $default;
    }
}

if (!function_exists('askr_internal_channels')) {
    /**
     * @internal Validates channel names with the sidecar's rules (src/sse/channel-rules.ts):
     * Pusher's charset, A-Z a-z 0-9 _ - = @ , . ;
     * @param string|array<mixed> $channels
     * @return list<string>|string the names, or an error message
     */
    function askr_internal_channels(string|array $channels): array|string
    {
        $names = is_string($channels) ? [$channels] : array_values($channels);
        if ($names === []) {
            return 'no channel given';
        }
        $maxLength = askr_internal_limit('ASKR_MAX_CHANNEL_NAME_LENGTH', ASKR_MAX_CHANNEL_NAME_LENGTH);
        foreach ($names as $name) {
            if (!is_string($name)) {
                return 'channel names must be strings, got ' . get_debug_type($name);
            }
            if ($name === '') {
                return 'channel name is empty';
            }
            if (strlen($name) > $maxLength) {
                return 'channel name is ' . strlen($name) . " bytes; the limit is $maxLength";
            }
            // \z, not $: $ would also match before a trailing "\n".
            if (preg_match('/\A[A-Za-z0-9_\-=@,.;]+\z/', $name) !== 1) {
                return 'channel name ' . json_encode($name, JSON_INVALID_UTF8_SUBSTITUTE)
                    . ' has a character outside A-Z a-z 0-9 _ - = @ , . ;';
            }
        }
        // The sidecar counts distinct names (it deduplicates them).
        $distinct = count(array_unique($names));
        $maxChannels = askr_internal_limit('ASKR_MAX_CHANNELS', ASKR_MAX_CHANNELS);
        if ($distinct > $maxChannels) {
            return "$distinct channels; the limit is $maxChannels";
        }
        return $names;
    }
}

if (!function_exists('askr_is_socket_id')) {
    /**
     * Whether $socketId is a stream's socket id as the sidecar accepts it (Pusher's format, what
     * Echo sends as X-Socket-ID): digits '.' digits, at most 20 digits each.
     */
    function askr_is_socket_id(string $socketId): bool
    {
        return preg_match('/\A\d{1,20}\.\d{1,20}\z/', $socketId) === 1;
    }
}

if (!function_exists('askr_encode_datagram')) {
    /**
     * Builds the v1 datagram for a publish, or returns null (askr_last_error() says why) when an
     * argument is invalid or the datagram exceeds ASKR_MAX_DATAGRAM. Sends nothing. $socket is
     * the publisher's socket id (toOthers()): the stream with that id does not get the event.
     *
     * @param string|list<string> $channels
     */
    function askr_encode_datagram(
        string|array $channels,
        string $data,
        ?string $event = null,
        ?string $id = null,
        bool $close = false,
        ?string $socket = null,
    ): ?string {
        $names = askr_internal_channels($channels);
        if (is_string($names)) {
            askr_internal_error(true, $names);
            return null;
        }
        // Same key order as encodeDatagram(): channel|channels, event, id, close, socket.
        $header = count($names) === 1 ? ['channel' => $names[0]] : ['channels' => $names];
        if ($event !== null) {
            if ($event === '' || strpbrk($event, "\r\n\0") !== false) {
                askr_internal_error(true, 'event must be non-empty, without CR, LF or NUL');
                return null;
            }
            $header['event'] = $event;
        }
        if ($id !== null) {
            if ($id === '' || strpbrk($id, "\r\n\0") !== false) {
                askr_internal_error(true, 'id must be non-empty, without CR, LF or NUL');
                return null;
            }
            if (strlen($id) > ASKR_MAX_ID_BYTES) {
                askr_internal_error(true, 'id is ' . strlen($id) . ' bytes; the limit is ' . ASKR_MAX_ID_BYTES);
                return null;
            }
            $header['id'] = $id;
        }
        if ($close) {
            $header['close'] = true;
        }
        if ($socket !== null) {
            if (!askr_is_socket_id($socket)) {
                askr_internal_error(true, 'socket must be <digits>.<digits> (a socket id such as "1234.5678")');
                return null;
            }
            $header['socket'] = $socket;
        }
        // LINE_TERMINATORS: keep U+2028/U+2029 raw, as JSON.stringify does (byte equality).
        $json = json_encode(
            $header,
            JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_LINE_TERMINATORS,
        );
        if ($json === false) {
            askr_internal_error(true, 'event or id is not valid UTF-8: ' . json_last_error_msg());
            return null;
        }
        $datagram = $json . "\n" . $data;
        $max = askr_internal_limit('ASKR_MAX_DATAGRAM', ASKR_MAX_DATAGRAM);
        if (strlen($datagram) > $max) {
            askr_internal_error(true, 'datagram is ' . strlen($datagram) . " bytes; the limit is $max (ASKR_MAX_DATAGRAM)");
            return null;
        }
        askr_internal_error(true, null);
        return $datagram;
    }
}

if (!function_exists('askr_internal_send')) {
    /**
     * @internal Sends one datagram on the process's socket (kept in a static, so an FPM worker
     * connects once), reconnecting once when the old one fails (sidecar restarted).
     */
    function askr_internal_send(string $datagram): bool
    {
        static $socket = null;
        static $socketPath = null;

        $path = getenv('ASKR_SOCKET');
        if (!is_string($path) || $path === '') {
            $path = isset($_SERVER['ASKR_SOCKET']) && is_string($_SERVER['ASKR_SOCKET']) && $_SERVER['ASKR_SOCKET'] !== ''
                ? $_SERVER['ASKR_SOCKET']
                : ASKR_DEFAULT_SOCKET;
        }
        if ($socket !== null && $socketPath !== $path) {
            @fclose($socket);
            $socket = null;
        }

        for ($attempt = 0; $attempt < 2; $attempt++) {
            if ($socket === null) {
                $errno = 0;
                $errstr = '';
                $connected = @stream_socket_client('udg://' . $path, $errno, $errstr, ASKR_SEND_TIMEOUT_SECONDS);
                if ($connected === false) {
                    // ENOENT (2) / ECONNREFUSED (111): no sidecar bound there.
                    askr_internal_error(true, "cannot reach the askr sidecar at $path: $errstr (errno $errno)");
                    return false;
                }
                stream_set_timeout($connected, ASKR_SEND_TIMEOUT_SECONDS);
                $socket = $connected;
                $socketPath = $path;
            }
            error_clear_last();
            $written = @fwrite($socket, $datagram);
            if ($written === strlen($datagram)) {
                askr_internal_error(true, null);
                return true;
            }
            if (stream_get_meta_data($socket)['timed_out']) {
                // The sidecar is bound but not reading: reconnecting would only wait again.
                askr_internal_error(true, 'the askr sidecar at ' . $path . ' did not take the datagram within '
                    . ASKR_SEND_TIMEOUT_SECONDS . ' s (its queue is full)');
                return false;
            }
            $cause = error_get_last()['message'] ?? 'short write';
            askr_internal_error(true, "cannot send to the askr sidecar at $path: $cause");
            @fclose($socket);
            $socket = null;
        }
        return false;
    }
}

if (!function_exists('askr_publish')) {
    /**
     * Publishes $data to one or more channels. Returns false (never throws) when an argument is
     * invalid, the datagram is too large, or the sidecar is absent; askr_last_error() says why.
     * $close ends the channels' streams after this event is delivered. $socket (a socket id, e.g.
     * the request's X-Socket-ID) leaves out the stream with that id: Laravel's toOthers().
     *
     * @param string|list<string> $channels
     */
    function askr_publish(
        string|array $channels,
        string $data,
        ?string $event = null,
        ?string $id = null,
        bool $close = false,
        ?string $socket = null,
    ): bool {
        $datagram = askr_encode_datagram($channels, $data, $event, $id, $close, $socket);
        return $datagram !== null && askr_internal_send($datagram);
    }
}

if (!function_exists('askr_broadcast')) {
    /**
     * Askr's signature: publishes $payload to $channel as a default ("message") event; with
     * $socket, to every stream but the one with that socket id (toOthers).
     */
    function askr_broadcast(string $channel, string $payload, ?string $socket = null): bool
    {
        return askr_publish($channel, $payload, socket: $socket);
    }
}

if (!function_exists('askr_subscribe')) {
    /**
     * Asks the sidecar to hold this response as an SSE stream subscribed to $channels
     * (X-Askr-Subscribe). The FPM request ends as usual; what PHP echoes is sent first.
     * On an invalid channel or headers already sent, it sends nothing, sets askr_last_error()
     * and raises an E_USER_WARNING (a programming error, unlike a failed publish). Names holding
     * ',' or ';' cannot be held this way (they separate the header's list): subscribe to them
     * through the events endpoint's repeated `channel=` parameters.
     *
     * @param string|list<string> $channels
     */
    function askr_subscribe(string|array $channels): void
    {
        $names = askr_internal_channels($channels);
        if (is_array($names)) {
            foreach ($names as $name) {
                if (strpbrk($name, ',;') !== false) {
                    $names = 'channel name ' . json_encode($name) . ' has a "," or ";", which separate '
                        . 'channels in X-Askr-Subscribe: subscribe to it with ?channel= on the events endpoint';
                    break;
                }
            }
        }
        if (is_string($names)) {
            askr_internal_error(true, $names);
            trigger_error("askr_subscribe: $names", E_USER_WARNING);
            return;
        }
        if (headers_sent($file, $line)) {
            $message = "headers already sent (output started at $file:$line)";
            askr_internal_error(true, $message);
            trigger_error("askr_subscribe: $message", E_USER_WARNING);
            return;
        }
        header('X-Askr-Subscribe: ' . implode(', ', array_unique($names)));
        askr_internal_error(true, null);
    }
}
