<?php
// A directly addressable script: runs only when server.php_scripts is on.
header('Content-Type: application/json');
echo json_encode(['script' => 'script.php', 'path_info' => $_SERVER['PATH_INFO'] ?? null, 'script_name' => $_SERVER['SCRIPT_NAME']]);
