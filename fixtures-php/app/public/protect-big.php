<?php
// Worker-protection tests: a big response, ?mib=N MiB (default 2) of a repeated 64 KiB block.
declare(strict_types=1);

$mib = max(1, (int) ($_GET['mib'] ?? 2));
header('Content-Type: application/octet-stream');
header('Content-Length: ' . ($mib * 1024 * 1024));
$block = str_repeat('0123456789abcdef', 4096);
for ($i = 0; $i < $mib * 16; $i++) {
    echo $block;
}
