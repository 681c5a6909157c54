<!doctype html>
<html lang="en">
<head>
    <meta charset="utf-8">
    <meta name="csrf-token" content="{{ csrf_token() }}">
    <title>Echo</title>
</head>
{{--
  The Echo test page: the real laravel-echo (public/vendor/laravel-echo, copied there from
  node_modules by the tests) with AskrConnector (public/vendor/askr, `vendor:publish --tag=askr-js`),
  as ES modules or, with ?build=iife, as the script builds. js/echo-page.js builds window.Echo the
  way a Laravel app's bootstrap.js does; the tests drive it with page.evaluate().
--}}
<body>
<p>Connection: <span id="status" data-status="">…</span></p>
<script src="/js/echo-page.js"></script>
@if ($build === 'iife')
<script src="/vendor/laravel-echo/echo.iife.js"></script>
<script src="/vendor/askr/askr-connector.iife.js"></script>
<script>startEchoPage(Echo.default, AskrConnector, @json($config));</script>
@else
<script type="module">
import Echo from '/vendor/laravel-echo/echo.js';
import { AskrConnector } from '/vendor/askr/askr-connector.js';
startEchoPage(Echo, AskrConnector, @json($config));
</script>
@endif
</body>
</html>
