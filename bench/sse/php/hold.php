<?php
// bench:sse: the same stream held by askr-sidecar. The worker returns at once; the sidecar keeps
// the client subscribed to ?channel= (default "bench") and sends what is published there.
require __DIR__ . '/../../../php/src/askr.php';
askr_subscribe((string) ($_GET['channel'] ?? 'bench'));
echo "data: held\n\n";
