<?php
// Used by test/managed-fpm.test.ts: PHP errors must reach the sidecar as FCGI_STDERR records.
error_log('askr-probe: error_log');
trigger_error('askr-probe: trigger_error', E_USER_WARNING);
echo 'body-after-errors';
