<?php
// Worker-protection tests: a page that keeps its worker busy for ~20 ms (?ms= changes it).
declare(strict_types=1);

usleep((int) ($_GET['ms'] ?? 20) * 1000);
header('Content-Type: text/plain');
echo 'ok ' . getmypid() . "\n";
