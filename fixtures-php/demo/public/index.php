<?php
// The demo app that `npm start` serves (front controller). Routes: `/` the live page (EventSource
// on the `demo` channel; `?source=hold` subscribes through the PHP hold instead), POST `/publish`
// (PHP publishes to `demo` over the sidecar's datagram socket), `/stream` (a stream held by the
// sidecar for PHP), `/hello` (plain text), and the classic name form (POST `/`).
// Invariant: every value PHP echoes into HTML is escaped; /publish answers JSON, never HTML.
declare(strict_types=1);

require __DIR__ . '/../../../php/src/askr.php';

const DEMO_CHANNEL = 'demo';
const MAX_TEXT_BYTES = 500;
const MAX_NAME_BYTES = 40;

$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';

/** A POST field as a trimmed string ('' when absent or not a string, e.g. `text[]=…`). */
function field(string $name): string
{
    $value = $_POST[$name] ?? '';
    return is_string($value) ? trim($value) : '';
}

function json_out(array $body, int $status = 200): void
{
    http_response_code($status);
    header('Content-Type: application/json');
    header('X-Content-Type-Options: nosniff');
    echo json_encode($body, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE), "\n";
}

function h(string $text): string
{
    return htmlspecialchars($text, ENT_QUOTES | ENT_SUBSTITUTE, 'UTF-8');
}

if ($path === '/hello') {
    header('Content-Type: text/plain');
    echo "Hello from PHP " . PHP_VERSION . " behind askr-sidecar\n";
    return;
}

if ($path === '/publish') {
    // A browser without JS posts the form here and comes back to the page; fetch() asks for JSON.
    $wantsJson = str_contains($_SERVER['HTTP_ACCEPT'] ?? '', 'application/json');
    if (($_SERVER['REQUEST_METHOD'] ?? 'GET') !== 'POST') {
        header('Allow: POST');
        json_out(['ok' => false, 'error' => 'use POST'], 405);
        return;
    }
    $text = field('text');
    $name = field('name') !== '' ? field('name') : 'guest';
    // 'chat' is a named SSE event (addEventListener('chat')); 'message' is askr_broadcast()'s plain one.
    $kind = field('kind') === 'message' ? 'message' : 'chat';
    $error = match (true) {
        $text === '' => 'the message is empty',
        preg_match('//u', $text . $name) !== 1 => 'the message is not valid UTF-8',
        strlen($text) > MAX_TEXT_BYTES => 'the message is over ' . MAX_TEXT_BYTES . ' bytes',
        strlen($name) > MAX_NAME_BYTES => 'the name is over ' . MAX_NAME_BYTES . ' bytes',
        default => null,
    };
    if ($error !== null && $wantsJson) {
        json_out(['ok' => false, 'error' => $error], 400);
        return;
    }
    if ($error !== null) {
        header('Location: /', true, 303);
        return;
    }
    $payload = json_encode(
        ['text' => $text, 'name' => $name, 'time' => gmdate('Y-m-d\TH:i:s\Z'), 'pid' => getmypid()],
        JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE,
    );
    $ok = $kind === 'chat'
        ? askr_publish(DEMO_CHANNEL, $payload, 'chat')
        : askr_broadcast(DEMO_CHANNEL, $payload);
    if (!$wantsJson) {
        header('Location: /', true, 303);
        return;
    }
    // The sidecar fans the event out to every subscriber, this page included: the page lists
    // what arrives over SSE, so this answer only says whether the datagram was sent.
    json_out(['ok' => $ok, 'error' => $ok ? null : askr_last_error(), 'event' => $kind], $ok ? 200 : 503);
    return;
}

if ($path === '/stream') {
    // A hold: this worker answers at once and is free again; the sidecar keeps the connection,
    // sends what PHP echoed as the first frame, then every event published to the channel.
    askr_subscribe(DEMO_CHANNEL);
    $hello = ['text' => 'stream held by the sidecar for PHP', 'time' => gmdate('Y-m-d\TH:i:s\Z'), 'pid' => getmypid()];
    echo "event: hello\ndata: " . json_encode($hello, JSON_UNESCAPED_SLASHES) . "\n\n";
    return;
}

$viaHold = ($_GET['source'] ?? '') === 'hold';
$streamUrl = $viaHold ? '/stream' : '/askr/events?channel=' . DEMO_CHANNEL;
$name = field('name');
?><!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>askr-sidecar demo</title>
  <link rel="stylesheet" href="/style.css">
  <link rel="icon" href="/favicon.svg">
  <script src="/live.js" defer></script>
</head>
<body>
  <h1>askr-sidecar demo</h1>
  <p>This page was rendered by PHP <?= h(PHP_VERSION) ?> (<?= h(PHP_SAPI) ?>) through the sidecar's
     FastCGI client; its stylesheet and script were served by the sidecar directly.</p>

  <section id="live" class="card" data-stream="<?= h($streamUrl) ?>">
    <header class="live-head">
      <h2>Live on channel <code><?= h(DEMO_CHANNEL) ?></code></h2>
      <span id="state" class="state" data-state="connecting" role="status">connecting…</span>
    </header>
    <p class="source">
      Stream: <code><?= h($streamUrl) ?></code>
      <?php if ($viaHold): ?>(a PHP hold: <code>askr_subscribe()</code>) · <a href="/">use the events endpoint</a>
      <?php else: ?>(the events endpoint) · <a href="/?source=hold">use a PHP hold instead</a><?php endif; ?>
    </p>
    <form id="publish" method="post" action="/publish">
      <input name="name" placeholder="name" maxlength="<?= MAX_NAME_BYTES ?>" aria-label="Your name" class="name">
      <input name="text" placeholder="Say something…" maxlength="<?= MAX_TEXT_BYTES ?>" aria-label="Message" required class="text">
      <button type="submit" name="kind" value="chat">Publish</button>
      <button type="submit" name="kind" value="message" class="secondary" title="askr_broadcast(): a plain message event">Broadcast</button>
    </form>
    <p id="publish-status" class="muted" aria-live="polite"></p>
    <ol id="messages" aria-label="Messages received over SSE"></ol>
    <p id="empty" class="muted">Nothing yet. Publish something, or open this page in a second tab and watch both.</p>
  </section>

  <section class="card">
    <h2>How it works</h2>
    <ul>
      <li>The page opens <code>new EventSource('<?= h($streamUrl) ?>')</code>; the sidecar holds that
          connection itself, so no PHP worker waits on it.</li>
      <li><em>Publish</em> POSTs to <code>/publish</code>, where PHP calls
          <code>askr_publish('demo', $json, 'chat')</code> (<em>Broadcast</em>: <code>askr_broadcast()</code>):
          one datagram to the sidecar, which sends it to every open page.</li>
      <li>The list shows only what arrived over the stream, never the answer of the POST.</li>
    </ul>
  </section>

  <section class="card">
    <h2>A classic form</h2>
    <form method="post" action="/">
      <label>Your name <input name="name" value="<?= h($name) ?>"></label>
      <button type="submit">Send</button>
    </form>
    <?php if ($name !== ''): ?><p id="greeting">Hello, <?= h($name) ?>!</p><?php endif; ?>
    <p><a href="/hello">/hello</a> (plain text)</p>
  </section>
</body>
</html>
