<?php
// An error page run by server.error_pages: it answers 200 itself, the sidecar keeps the 403.
http_response_code(200);
header('Content-Type: text/plain');
echo "php error page for {$_SERVER['REQUEST_URI']} ({$_SERVER['REQUEST_METHOD']})\n";
