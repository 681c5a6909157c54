<?php
// Drives the PHP shim with test/vectors/datagram-v1.json for test/datagram-ingress.test.ts.
// Usage: php vectors.php encode|publish VECTORS_JSON. Prints one JSON array:
//   encode:  every case with a call: {name, datagram_base64 (null when refused), error}
//   publish: every case with a call: {name, ok (askr_publish's result), error}
declare(strict_types=1);
require __DIR__ . '/../../php/src/askr.php';

[, $mode, $file] = $argv + [null, null, null];
if (!in_array($mode, ['encode', 'publish'], true) || !is_string($file)) {
    fwrite(STDERR, "usage: php vectors.php encode|publish VECTORS_JSON\n");
    exit(2);
}
$cases = json_decode((string) file_get_contents($file), true, 512, JSON_THROW_ON_ERROR);
$out = [];
foreach ($cases as $case) {
    $call = $case['call'];
    if ($call === null) {
        continue;
    }
    $data = isset($call['data_base64']) ? base64_decode($call['data_base64'], true) : $call['data'];
    $args = [$call['channels'], $data, $call['event'] ?? null, $call['id'] ?? null, $call['close'] ?? false];
    if ($mode === 'encode') {
        $datagram = askr_encode_datagram(...$args);
        $out[] = [
            'name' => $case['name'],
            'datagram_base64' => $datagram === null ? null : base64_encode($datagram),
            'error' => askr_last_error(),
        ];
    } else {
        $ok = askr_publish(...$args);
        $out[] = ['name' => $case['name'], 'ok' => $ok, 'error' => askr_last_error()];
    }
}
echo json_encode($out, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES), "\n";
