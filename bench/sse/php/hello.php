<?php
// bench:sse hello-world load: the cheapest PHP response, to see whether FPM still has a worker.
header('Content-Type: text/plain');
echo "hello\n";
