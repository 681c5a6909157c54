<?php
// A second script beside the front controller: each recipe decides whether a URL may run it.
require __DIR__ . '/../dump.php';
parity_dump('other.php');
