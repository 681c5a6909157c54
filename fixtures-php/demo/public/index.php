<?php
// The demo app that `npm start` serves: a front controller with a page and a small form.
declare(strict_types=1);

$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';

if ($path === '/hello') {
    header('Content-Type: text/plain');
    echo "Hello from PHP " . PHP_VERSION . " behind askr-sidecar\n";
    return;
}

$name = htmlspecialchars((string) ($_POST['name'] ?? ''), ENT_QUOTES);
?><!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>askr-sidecar demo</title>
  <link rel="stylesheet" href="/style.css">
</head>
<body>
  <h1>askr-sidecar demo</h1>
  <p>This page was rendered by PHP <?= PHP_VERSION ?> (<?= htmlspecialchars(PHP_SAPI) ?>) through the sidecar's FastCGI client.
     The stylesheet was served by the sidecar directly.</p>
  <form method="post" action="/">
    <label>Your name <input name="name" value="<?= $name ?>"></label>
    <button type="submit">Send</button>
  </form>
  <?php if ($name !== ''): ?><p id="greeting">Hello, <?= $name ?>!</p><?php endif; ?>
  <p><a href="/hello">/hello</a> (plain text)</p>
</body>
</html>
