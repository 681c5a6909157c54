<?php
// Front controller of the parity fixture: dumps the request (see ../dump.php).
require __DIR__ . '/../dump.php';
parity_dump('index.php');
