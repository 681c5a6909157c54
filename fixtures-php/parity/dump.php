<?php
// What PHP sees of one request, as JSON, for test/nginx-parity.test.ts (nginx and the sidecar in
// front of the same php-fpm pool): all of $_SERVER, getallheaders() and the md5 of php://input.
// Strings that are not valid UTF-8 are sent as "hex:<bytes>", so no byte difference is hidden.
// A HEAD response has no body: there the dump travels deflated in the X-Parity-Dump header.
declare(strict_types=1);

function parity_utf8(mixed $value): mixed
{
    if (is_array($value)) {
        return array_map('parity_utf8', $value);
    }
    if (is_string($value) && preg_match('//u', $value) !== 1) {
        return 'hex:' . bin2hex($value);
    }
    return $value;
}

function parity_dump(string $script): void
{
    $input = (string) file_get_contents('php://input');
    $json = json_encode([
        'script' => $script,
        'server' => parity_utf8($_SERVER),
        'headers' => parity_utf8(getallheaders()),
        'input_md5' => md5($input),
        'input_length' => strlen($input),
    ], JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR);
    header('Content-Type: application/json');
    if ($_SERVER['REQUEST_METHOD'] === 'HEAD') {
        header('X-Parity-Dump: ' . base64_encode((string) gzdeflate($json, 9)));
    }
    echo $json;
}
