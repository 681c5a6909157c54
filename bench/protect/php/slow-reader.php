<?php
// bench:protect slow readers (bench/protect/slow-clients.ts runs this with php-cli): opens COUNT
// TCP connections with a small SO_RCVBUF set before connect (Node's net cannot set it), sends one
// GET on each and never reads the answer. Prints "ready COUNT", then once a second
// "state SECONDS WITH_DATA CLOSED": connections where answer bytes wait unread / that the server
// closed or reset. Runs until killed.
//   php slow-reader.php HOST PORT PATH COUNT RCVBUF_BYTES
if ($argc !== 6) {
    fwrite(STDERR, "usage: php slow-reader.php HOST PORT PATH COUNT RCVBUF_BYTES\n");
    exit(2);
}
[, $host, $port, $path, $count, $rcvbuf] = $argv;
$sockets = [];
for ($i = 0; $i < (int) $count; $i++) {
    $s = socket_create(AF_INET, SOCK_STREAM, SOL_TCP);
    // Before connect, so the window offered in the SYN is already the small one.
    if ($s === false || !socket_set_option($s, SOL_SOCKET, SO_RCVBUF, (int) $rcvbuf)) {
        fwrite(STDERR, 'socket: ' . socket_strerror(socket_last_error()) . "\n");
        exit(1);
    }
    if (!socket_connect($s, $host, (int) $port)) {
        fwrite(STDERR, "connect $host:$port: " . socket_strerror(socket_last_error($s)) . "\n");
        exit(1);
    }
    $request = "GET $path HTTP/1.1\r\nHost: $host:$port\r\nUser-Agent: bench-protect-slow-reader\r\n\r\n";
    if (socket_write($s, $request) !== strlen($request)) {
        fwrite(STDERR, 'write: ' . socket_strerror(socket_last_error($s)) . "\n");
        exit(1);
    }
    $sockets[] = $s;
}
echo 'ready ' . count($sockets) . "\n";
$start = microtime(true);
for (;;) {
    sleep(1);
    $withData = 0;
    $closed = 0;
    foreach ($sockets as $s) {
        // MSG_PEEK leaves the bytes in the kernel buffer: the window stays as full as it was.
        $buf = '';
        $n = @socket_recv($s, $buf, 1, MSG_PEEK | MSG_DONTWAIT);
        if ($n === false) {
            $err = socket_last_error($s);
            socket_clear_error($s);
            if ($err !== SOCKET_EAGAIN) $closed++;
        } elseif ($n === 0) {
            $closed++;
        } else {
            $withData++;
        }
    }
    printf("state %d %d %d\n", (int) round(microtime(true) - $start), $withData, $closed);
}
