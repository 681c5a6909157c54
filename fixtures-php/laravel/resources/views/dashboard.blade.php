<!doctype html>
<html lang="en">
<head>
    <meta charset="utf-8">
    <meta name="csrf-token" content="{{ csrf_token() }}">
    <title>Dashboard</title>
</head>
{{--
  Live page over askr-sidecar with the askr-echo.js helper (published to public/vendor/askr by
  `php artisan vendor:publish --tag=askr-js`): the user's private order channels, the public chat
  and the presence room share one EventSource. window.askrLog records what arrived, for tests.
--}}
<body data-user="{{ $user->name }}">
<h1>Hello {{ $user->name }}</h1>
<p>Stream: <span id="state" data-state="idle">idle</span></p>

<h2>Your orders</h2>
<ul id="orders">
@foreach ($orders as $order)
    <li>
        Order {{ $order->id }}: <span class="status" data-order="{{ $order->id }}">{{ $order->status }}</span>
        <button type="button" data-ship="{{ $order->id }}">Ship now</button>
        <button type="button" data-ship-later="{{ $order->id }}">Ship later</button>
    </li>
@endforeach
</ul>

<h2>In the room</h2>
<ul id="members"></ul>

<h2>Chat</h2>
<form id="chat">
    <input name="text" autocomplete="off">
    <button type="submit">Send</button>
</form>
<ul id="messages"></ul>

<script type="module">
import { AskrEcho } from '/vendor/askr/askr-echo.js';

const orders = @json($orders->pluck('id'));
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const echo = new AskrEcho();
const log = { events: [], sent: [], lost: [], states: [], errors: [], members: [] };
window.askrEcho = echo;
window.askrLog = log;

const state = document.getElementById('state');
echo.onStateChange((s) => {
    log.states.push(s);
    state.textContent = s;
    state.dataset.state = s;
});
echo.onLost((info) => log.lost.push(info));

for (const id of orders) {
    echo.private(`orders.${id}`)
        .listen('OrderShipped', (e) => {
            log.events.push({ channel: `private-orders.${id}`, event: 'OrderShipped', data: e });
            document.querySelector(`.status[data-order="${e.id}"]`).textContent = `${e.status} (${e.via})`;
        })
        .error((err) => log.errors.push(err));
}

const messages = document.getElementById('messages');
echo.channel('chat').listen('.message.posted', (e) => {
    log.events.push({ channel: 'chat', event: 'message.posted', data: e });
    const li = document.createElement('li');
    li.textContent = `${e.user}: ${e.text}`;
    messages.append(li);
});

const members = document.getElementById('members');
const renderMembers = (list) => {
    members.replaceChildren(...list.map((m) => {
        const li = document.createElement('li');
        li.textContent = m.name;
        li.dataset.id = m.id;
        return li;
    }));
};
const room = echo.join('room.1')
    .here((list) => { log.members.push({ here: list }); renderMembers(list); })
    .joining((m) => { log.members.push({ joining: m }); renderMembers([...room.members.values()].map((x) => x.user_info)); })
    .leaving((m) => { log.members.push({ leaving: m }); renderMembers([...room.members.values()].map((x) => x.user_info)); });

const post = (url, body) => fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'X-CSRF-TOKEN': csrf, ...echo.headers() },
    body: JSON.stringify(body ?? {}),
});
document.addEventListener('click', (e) => {
    const ship = e.target.closest('[data-ship]');
    if (ship) post(`/orders/${ship.dataset.ship}/ship`);
    const later = e.target.closest('[data-ship-later]');
    if (later) post(`/orders/${later.dataset.shipLater}/ship-later`);
});
document.getElementById('chat').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = e.target.elements.text;
    const text = input.value;
    input.value = '';
    log.sent.push(text);
    post('/chat', { text });
});
</script>
</body>
</html>
