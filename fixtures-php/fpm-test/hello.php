<?php
// Used by test/managed-fpm.test.ts: proves the managed pool runs PHP and what PHP sees.
header('Content-Type: text/plain');
echo json_encode([
    'hello' => 'from php-fpm',
    'sapi' => PHP_SAPI,
    'pid' => getmypid(),
    'env' => [
        'ASKR_TEST_VALUE' => getenv('ASKR_TEST_VALUE'),
        'ASKR_TEST_EMPTY' => getenv('ASKR_TEST_EMPTY'),
        'ASKR_TEST_SECRET' => getenv('ASKR_TEST_SECRET'),
        'PATH' => getenv('PATH'),
    ],
    'ini' => [
        'memory_limit' => ini_get('memory_limit'),
        'error_prepend_string' => ini_get('error_prepend_string'),
        'log_errors' => ini_get('log_errors'),
        'error_log' => ini_get('error_log'),
    ],
]);
