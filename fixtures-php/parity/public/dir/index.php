<?php
// The index of a directory: run for /dir/ only where a recipe runs directory indexes.
require __DIR__ . '/../../dump.php';
parity_dump('dir/index.php');
