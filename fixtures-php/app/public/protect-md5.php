<?php
// Worker-protection tests: the length and md5 of the request body, as PHP received it.
declare(strict_types=1);

$input = file_get_contents('php://input');
header('Content-Type: application/json');
echo json_encode(['length' => strlen($input), 'md5' => md5($input)]);
